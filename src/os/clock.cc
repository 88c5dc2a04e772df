#include "os/clock.h"

#include <time.h>

namespace tandem::os {

namespace {
int64_t Read(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}
}  // namespace

int64_t RealClock::NowMs() const { return Read(CLOCK_MONOTONIC); }
int64_t RealClock::WallMs() const { return Read(CLOCK_REALTIME); }
RealClock& RealClock::Get() {
  static RealClock clock;
  return clock;
}

}  // namespace tandem::os
