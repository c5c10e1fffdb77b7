#pragma once
// Each rank's clock against rank 0's, estimated at start-up as NTP does, so that latencies
// measured between two hosts (a frame starts on the source, ends on the sink) use one clock.
// Rank r sends its time t1; rank 0 answers with the times it received (t2) and answered (t3);
// r notes t4 on arrival. Then rank 0's clock minus r's is ((t2 - t1) + (t3 - t4)) / 2, within
// half the round trip (t4 - t1) - (t3 - t2); of a few exchanges the shortest round trip wins.
// An offset no larger than its uncertainty is taken as zero.
#include "runtime/transport.h"

namespace chorus::runtime {

struct ClockOffset {
  double offset_s = 0;       // rank 0's clock minus this rank's
  double uncertainty_s = 0;  // half the round trip of the exchange it came from
};

// Collective (every rank calls it once, before streaming); returns this rank's offset (zero on
// rank 0). Rank 0 answers the other ranks one after the other.
ClockOffset estimate_clock_offset(Transport& transport, int exchanges = 8);

}  // namespace chorus::runtime
