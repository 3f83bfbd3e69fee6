#ifndef CALLTAP_CZSTD_SHIM_H
#define CALLTAP_CZSTD_SHIM_H
// Zstandard, for the agent transcripts OpenClaw stores compressed (transcript_events.event_zstd).
#include <zstd.h>
#endif
