#ifndef CALLTAP_CPCAP_SHIM_H
#define CALLTAP_CPCAP_SHIM_H
#include <pcap/pcap.h>
#include <pcap/dlt.h>
#endif
