#include "console/throttle.h"

#include <gtest/gtest.h>

namespace tandem::console {
namespace {

TEST(ThrottleTest, LocksAfterTheLimitUntilTheOldestFailureAgesOut) {
  Throttle t(3, 1000, 100);
  EXPECT_EQ(t.RetryAfterMs("a", 0), 0);
  t.Failed("a", 0);
  t.Failed("a", 100);
  EXPECT_EQ(t.RetryAfterMs("a", 150), 0);
  t.Failed("a", 200);
  EXPECT_EQ(t.RetryAfterMs("a", 250), 750);  // the failure at 0 ages out at 1000
  EXPECT_EQ(t.RetryAfterMs("b", 250), 0);    // keys are independent
  EXPECT_EQ(t.RetryAfterMs("a", 999), 1);
  EXPECT_EQ(t.RetryAfterMs("a", 1000), 0);
  t.Failed("a", 1000);                       // 100, 200, 1000: locked until 1100
  EXPECT_EQ(t.RetryAfterMs("a", 1050), 50);
  t.Succeeded("a");
  EXPECT_EQ(t.RetryAfterMs("a", 1050), 0);
  EXPECT_EQ(t.keys(), 0u);
}

TEST(ThrottleTest, MemoryIsBoundedByTheKeyLimit) {
  Throttle t(2, 1000, 10);
  for (int i = 0; i < 1000; ++i) t.Failed("k" + std::to_string(i), i);
  EXPECT_LE(t.keys(), 10u);
  // The newest keys are the ones kept.
  t.Failed("k999", 999);
  EXPECT_GT(t.RetryAfterMs("k999", 999), 0);
  // Expired keys make room before live ones are dropped.
  Throttle u(1, 100, 2);
  u.Failed("old", 0);
  u.Failed("live", 150);
  u.Failed("new", 160);  // "old" expired at 100: it goes, "live" stays
  EXPECT_GT(u.RetryAfterMs("live", 160), 0);
  EXPECT_GT(u.RetryAfterMs("new", 160), 0);
}

}  // namespace
}  // namespace tandem::console
