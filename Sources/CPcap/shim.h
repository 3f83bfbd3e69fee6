#ifndef CALLTAP_CPCAP_SHIM_H
#define CALLTAP_CPCAP_SHIM_H
#include <pcap/pcap.h>
#include <pcap/dlt.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

// setns is declared only with _GNU_SOURCE; declare it here for entering network namespaces.
extern int setns(int fd, int nstype);
static inline int calltap_enter_netns(int fd) { return setns(fd, 0x40000000 /* CLONE_NEWNET */); }

// Opens a capture file ("-" is standard input) with a 1 MiB stdio buffer. libpcap reads each record with
// two small freads; with the default 4 KiB buffer that is a read(2) every few packets.
static inline pcap_t *calltap_open_offline(const char *path, char *errbuf) {
    FILE *f = (path[0] == '-' && path[1] == 0) ? stdin : fopen(path, "rb");
    if (f == NULL) {
        snprintf(errbuf, PCAP_ERRBUF_SIZE, "%s", strerror(errno));
        return NULL;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    pcap_t *p = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, errbuf);
    if (p == NULL && f != stdin) fclose(f);
    return p;
}
#endif
