#include "daemon/state_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "util/temp_dir.h"

namespace tandem::daemon {
namespace {

class StateFileTest : public ::testing::Test {
 protected:
  TempDir tmp_{"tandem-state"};
  const std::string dir_ = tmp_.path();
};

TEST_F(StateFileTest, MissingFileIsFreshState) {
  auto s = LoadStateFile(dir_ + "/state.json");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->incarnation, 0u);
  EXPECT_EQ(s->disk, ha::Persistent{});
}

TEST_F(StateFileTest, RoundTripIsPrivateAndComplete) {
  StateFile s;
  s.incarnation = 9;
  s.disk = {7, 6, true, true, "disk on fire"};
  s.last_status = "FAILED";
  s.peer_status = "ACTIVE";
  s.peer_epoch = 7;
  ASSERT_TRUE(SaveStateFile(dir_ + "/state.json", s).ok());
  struct stat st {};
  ASSERT_EQ(stat((dir_ + "/state.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto back = LoadStateFile(dir_ + "/state.json");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->incarnation, 9u);
  EXPECT_EQ(back->disk, s.disk);
  EXPECT_EQ(back->last_status, "FAILED");
  EXPECT_EQ(back->peer_status, "ACTIVE");
  EXPECT_EQ(back->peer_epoch, 7u);
}

TEST_F(StateFileTest, CorruptFileIsAnErrorNamingIt) {
  for (const char* text : {"{not json", "[]", "{\"version\": 1}", "{\"version\": 2}",
                           "{\"version\":1,\"incarnation\":\"x\",\"epoch\":1,\"last_active_epoch\":1,"
                           "\"admin_offline\":false,\"failed\":false,\"failed_reason\":\"\"}"}) {
    std::ofstream(dir_ + "/state.json") << text;
    auto s = LoadStateFile(dir_ + "/state.json");
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_NE(s.status().message().find(dir_ + "/state.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace tandem::daemon
