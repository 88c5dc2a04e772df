#include "ha/guidance.h"

#include <gtest/gtest.h>

namespace tandem::ha {
namespace {

using S = HostStatus;

// The guide's table 4, row by row.
TEST(Guidance, Table4Combinations) {
  EXPECT_NE(PossibleAction(S::kActive, S::kFailed).find("restore it: run `ha restore` on the secondary"),
            std::string::npos);
  EXPECT_NE(PossibleAction(S::kActive, S::kUnknown).find("secondary"), std::string::npos);
  EXPECT_NE(PossibleAction(S::kFailed, S::kActive).find("`ha restore` on the primary"),
            std::string::npos);
  EXPECT_NE(PossibleAction(S::kUnknown, S::kActive).find("primary"), std::string::npos);
  EXPECT_NE(PossibleAction(S::kUnknown, S::kUnknown).find("network and hardware"), std::string::npos);
  EXPECT_NE(PossibleAction(S::kOffline, S::kActive).find("`ha online` on the primary"),
            std::string::npos);
  EXPECT_EQ(PossibleAction(S::kActive, S::kStandby), "None: the cluster is protected.");
  EXPECT_EQ(PossibleAction(S::kStandby, S::kActive), "None: the cluster is protected.");
  EXPECT_NE(PossibleAction(S::kStarting, S::kActive).find("transition"), std::string::npos);
}

// Synchronizing (R-DS-2): wait while the active runs; nobody active: restore
// the other host or force the incomplete replica.
TEST(Guidance, Synchronizing) {
  EXPECT_NE(PossibleAction(S::kActive, S::kSynchronizing).find("Wait: the secondary host"),
            std::string::npos);
  EXPECT_NE(PossibleAction(S::kSynchronizing, S::kActive).find("Wait: the primary host"),
            std::string::npos);
  EXPECT_NE(PossibleAction(S::kSynchronizing, S::kFailed)
                .find("`ha takeover --force` on the primary"),
            std::string::npos);
  EXPECT_NE(PossibleAction(S::kUnknown, S::kSynchronizing)
                .find("`ha takeover --force` on the secondary"),
            std::string::npos);
  EXPECT_NE(PossibleAction(S::kSynchronizing, S::kStarting).find("transition"), std::string::npos);
}

}  // namespace
}  // namespace tandem::ha
