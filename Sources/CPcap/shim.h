#ifndef CALLTAP_CPCAP_SHIM_H
#define CALLTAP_CPCAP_SHIM_H
#include <pcap/pcap.h>
#include <pcap/dlt.h>

// setns is declared only with _GNU_SOURCE; declare it here for entering network namespaces.
extern int setns(int fd, int nstype);
static inline int calltap_enter_netns(int fd) { return setns(fd, 0x40000000 /* CLONE_NEWNET */); }
#endif
