// Failure throttling by key (R-NF-2: guessing passwords or pairing tokens
// must be slow): a key (a user name, a client address) that has failed
// `failures_max` times within `window_ms` is refused until the oldest of
// those failures is `window_ms` old. Pure apart from its mutex; times come
// from the caller (a clock), so tests drive it directly.
//
// Memory is bounded: at most `keys_max` keys are tracked; when full, keys
// whose failures have all expired go first, then the least recently failed.
//
// Thread-safety: all calls may be made from several threads at once.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace tandem::console {

class Throttle {
 public:
  Throttle(int failures_max, int64_t window_ms, size_t keys_max)
      : failures_max_(failures_max), window_ms_(window_ms), keys_max_(keys_max) {}

  // 0 when `key` may try now, else the milliseconds until it may.
  int64_t RetryAfterMs(const std::string& key, int64_t now_ms);
  // Records a failure of `key` at `now_ms`.
  void Failed(const std::string& key, int64_t now_ms);
  // Forgets `key`'s failures (after a success).
  void Succeeded(const std::string& key);
  size_t keys() const;

 private:
  void Expire(std::deque<int64_t>& times, int64_t now_ms) const;
  void MakeRoom(int64_t now_ms);

  const int failures_max_;
  const int64_t window_ms_;
  const size_t keys_max_;
  mutable std::mutex mu_;
  std::map<std::string, std::deque<int64_t>> failures_;  // GUARDED_BY(mu_)
};

}  // namespace tandem::console
