// Clock seam (ENGINEERING.md #2): real in os/, simulated in test/sim/.
#pragma once

#include <cstdint>

namespace tandem::os {

// Monotonic and wall time in milliseconds. Thread-safe in the real version.
class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic milliseconds since an arbitrary origin; never goes backwards.
  virtual int64_t NowMs() const = 0;
  // Wall-clock milliseconds since the Unix epoch, for logs and display only:
  // never used to decide anything (R-DS-4).
  virtual int64_t WallMs() const = 0;
};

class RealClock final : public Clock {
 public:
  int64_t NowMs() const override;
  int64_t WallMs() const override;
  static RealClock& Get();
};

}  // namespace tandem::os
