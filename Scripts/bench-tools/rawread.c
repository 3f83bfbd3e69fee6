/* The baseline for Scripts/bench: read every packet of a capture with libpcap and touch every byte.
   The file is opened with the same 1 MiB stdio buffer as calltap's reader, so the two read alike. */
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdint.h>

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    if (argc < 2) { fprintf(stderr, "usage: rawread FILE\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    pcap_t *p = pcap_fopen_offline(f, err);
    if (!p) { fprintf(stderr, "%s\n", err); return 2; }
    struct pcap_pkthdr *h;
    const u_char *d;
    uint64_t packets = 0, bytes = 0, sum = 0;
    while (pcap_next_ex(p, &h, &d) == 1) {
        packets++;
        bytes += h->caplen;
        for (uint32_t i = 0; i < h->caplen; i++) sum += d[i];
    }
    printf("packets=%llu bytes=%llu checksum=%llu\n", (unsigned long long)packets, (unsigned long long)bytes,
           (unsigned long long)sum);
    pcap_close(p);
    return 0;
}
