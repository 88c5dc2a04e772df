#include "console/throttle.h"

#include <algorithm>

namespace tandem::console {

void Throttle::Expire(std::deque<int64_t>& times, int64_t now_ms) const {
  while (!times.empty() && times.front() <= now_ms - window_ms_) times.pop_front();
}

int64_t Throttle::RetryAfterMs(const std::string& key, int64_t now_ms) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = failures_.find(key);
  if (it == failures_.end()) return 0;
  Expire(it->second, now_ms);
  if (it->second.empty()) {
    failures_.erase(it);
    return 0;
  }
  if (static_cast<int>(it->second.size()) < failures_max_) return 0;
  // The failure that must age out before another try is allowed.
  const int64_t oldest = it->second[it->second.size() - static_cast<size_t>(failures_max_)];
  return std::max<int64_t>(1, oldest + window_ms_ - now_ms);
}

void Throttle::MakeRoom(int64_t now_ms) {
  for (auto it = failures_.begin(); it != failures_.end();) {
    Expire(it->second, now_ms);
    it = it->second.empty() ? failures_.erase(it) : std::next(it);
  }
  while (failures_.size() >= keys_max_ && !failures_.empty()) {
    auto victim = failures_.begin();
    for (auto it = failures_.begin(); it != failures_.end(); ++it) {
      if (it->second.back() < victim->second.back()) victim = it;
    }
    failures_.erase(victim);
  }
}

void Throttle::Failed(const std::string& key, int64_t now_ms) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = failures_.find(key);
  if (it == failures_.end()) {
    if (failures_.size() >= keys_max_) MakeRoom(now_ms);
    it = failures_.emplace(key, std::deque<int64_t>{}).first;
  }
  Expire(it->second, now_ms);
  it->second.push_back(now_ms);
  // Only the newest failures_max_ matter for the answer.
  while (static_cast<int>(it->second.size()) > failures_max_) it->second.pop_front();
}

void Throttle::Succeeded(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  failures_.erase(key);
}

size_t Throttle::keys() const {
  std::lock_guard<std::mutex> l(mu_);
  return failures_.size();
}

}  // namespace tandem::console
