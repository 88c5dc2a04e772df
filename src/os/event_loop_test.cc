#include "os/event_loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "os/testing.h"

namespace tandem::os {
namespace {

// Every test stops its loop from a timer after this long, so a broken loop
// fails the test instead of hanging it.
constexpr int64_t kDeadlineMs = 5000;

bool RunWithDeadline(EventLoop& loop) { return os::RunWithDeadline(loop, kDeadlineMs); }

TEST(EventLoopTest, TimersFireInDueOrder) {
  EventLoop loop;
  std::vector<int> order;
  loop.AddTimer(60, [&] {
    order.push_back(60);
    loop.Stop();
  });
  loop.AddTimer(20, [&] { order.push_back(20); });
  loop.AddTimer(40, [&] { order.push_back(40); });
  loop.AddTimer(0, [&] { order.push_back(0); });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(order, (std::vector<int>{0, 20, 40, 60}));
}

TEST(EventLoopTest, TimerWaitsAtLeastItsDelay) {
  EventLoop loop;
  int64_t start = loop.clock().NowMs();
  int64_t fired = 0;
  loop.AddTimer(50, [&] {
    fired = loop.clock().NowMs();
    loop.Stop();
  });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_GE(fired - start, 50);
}

TEST(EventLoopTest, CancelledTimerNeverFires) {
  EventLoop loop;
  bool cancelled_fired = false;
  EventLoop::TimerId id = loop.AddTimer(10, [&] { cancelled_fired = true; });
  loop.AddTimer(50, [&] { loop.Stop(); });
  loop.CancelTimer(id);
  loop.CancelTimer(id);  // twice: no-op
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_FALSE(cancelled_fired);
}

TEST(EventLoopTest, CancelAfterFiringIsNoop) {
  EventLoop loop;
  int fired = 0;
  EventLoop::TimerId id = loop.AddTimer(0, [&] { ++fired; });
  loop.AddTimer(20, [&] {
    loop.CancelTimer(id);
    loop.Stop();
  });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(fired, 1);
}

// Known bug (event_loop.cc, not fixed here): RunTimers() extracts every due
// timer before running any, so a timer cancelled by an earlier callback of
// the same iteration still runs. Enable once RunTimers re-checks timer_due_.
TEST(EventLoopTest, CancelFromEarlierCallbackInSameIteration) {
  EventLoop loop;
  bool second_fired = false;
  EventLoop::TimerId second = 0;
  loop.AddTimer(10, [&] { loop.CancelTimer(second); });
  second = loop.AddTimer(10, [&] { second_fired = true; });
  loop.AddTimer(50, [&] { loop.Stop(); });
  usleep(30000);  // both are due when Run() first looks
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_FALSE(second_fired);
}

TEST(EventLoopTest, TimerAddedFromCallbackRuns) {
  EventLoop loop;
  int chain = 0;
  std::function<void()> step = [&] {
    if (++chain == 5) {
      loop.Stop();
    } else {
      loop.AddTimer(0, step);
    }
  };
  loop.AddTimer(0, step);
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(chain, 5);
}

class PipeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(pipe2(fds_, O_CLOEXEC | O_NONBLOCK), 0); }
  void TearDown() override {
    close(fds_[0]);
    close(fds_[1]);
  }
  int fds_[2] = {-1, -1};
};

TEST_F(PipeTest, FdReadableAfterWrite) {
  EventLoop loop;
  std::string got;
  ASSERT_TRUE(loop.AddFd(fds_[0], EPOLLIN,
                         [&](uint32_t events) {
                           EXPECT_TRUE(events & EPOLLIN);
                           char buf[16];
                           ssize_t n = read(fds_[0], buf, sizeof buf);
                           if (n > 0) got.append(buf, static_cast<size_t>(n));
                           loop.Stop();
                         })
                  .ok());
  loop.AddTimer(20, [&] { ASSERT_EQ(write(fds_[1], "hi", 2), 2); });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(got, "hi");
  loop.RemoveFd(fds_[0]);
}

TEST_F(PipeTest, RemovedFdIsNotDispatched) {
  EventLoop loop;
  int calls = 0;
  ASSERT_TRUE(loop.AddFd(fds_[0], EPOLLIN, [&](uint32_t) { ++calls; }).ok());
  loop.RemoveFd(fds_[0]);
  ASSERT_EQ(write(fds_[1], "x", 1), 1);
  loop.AddTimer(50, [&] { loop.Stop(); });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(calls, 0);
}

TEST_F(PipeTest, ModifyFdSwitchesToWritable) {
  EventLoop loop;
  int writable = 0;
  ASSERT_TRUE(loop.AddFd(fds_[1], 0,
                         [&](uint32_t events) {
                           if (events & EPOLLOUT) ++writable;
                           loop.RemoveFd(fds_[1]);
                           loop.Stop();
                         })
                  .ok());
  ASSERT_TRUE(loop.ModifyFd(fds_[1], EPOLLOUT).ok());
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(writable, 1);
}

TEST(EventLoopTest, AddFdRejectsBadFd) {
  EventLoop loop;
  Status st = loop.AddFd(-1, EPOLLIN, [](uint32_t) {});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("epoll_ctl"), std::string::npos);
}

TEST(EventLoopTest, PostFromAnotherThreadRunsOnLoopThread) {
  EventLoop loop;
  std::thread::id loop_thread = std::this_thread::get_id();
  std::thread::id ran_on;
  std::atomic<bool> ran{false};
  std::thread poster([&] {
    usleep(20000);  // let Run() block in epoll_wait first
    loop.Post([&] {
      ran_on = std::this_thread::get_id();
      ran = true;
      loop.Stop();
    });
  });
  bool stopped = RunWithDeadline(loop);
  poster.join();
  ASSERT_TRUE(stopped);
  EXPECT_TRUE(ran);
  EXPECT_EQ(ran_on, loop_thread);
}

TEST(EventLoopTest, ManyPostsAllRunInOrder) {
  EventLoop loop;
  static constexpr int kPosts = 1000;
  std::vector<int> seen;
  std::thread poster([&] {
    for (int i = 0; i < kPosts; ++i) {
      loop.Post([&seen, &loop, i] {
        seen.push_back(i);
        if (i == kPosts - 1) loop.Stop();
      });
    }
  });
  bool stopped = RunWithDeadline(loop);
  poster.join();
  ASSERT_TRUE(stopped);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kPosts));
  for (int i = 0; i < kPosts; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], i);
}

TEST(EventLoopTest, SignalDeliveredThroughLoop) {
  EventLoop loop;
  int got = 0;
  ASSERT_TRUE(loop.AddSignal(SIGUSR1,
                             [&] {
                               ++got;
                               loop.Stop();
                             })
                  .ok());
  loop.AddTimer(10, [] { ASSERT_EQ(kill(getpid(), SIGUSR1), 0); });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_EQ(got, 1);
}

TEST(EventLoopTest, TwoSignalsOnOneLoop) {
  EventLoop loop;
  bool usr1 = false, usr2 = false;
  auto maybe_stop = [&] {
    if (usr1 && usr2) loop.Stop();
  };
  ASSERT_TRUE(loop.AddSignal(SIGUSR1,
                             [&] {
                               usr1 = true;
                               maybe_stop();
                             })
                  .ok());
  ASSERT_TRUE(loop.AddSignal(SIGUSR2,
                             [&] {
                               usr2 = true;
                               maybe_stop();
                             })
                  .ok());
  loop.AddTimer(10, [] {
    ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
    ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  });
  ASSERT_TRUE(RunWithDeadline(loop));
  EXPECT_TRUE(usr1);
  EXPECT_TRUE(usr2);
}

}  // namespace
}  // namespace tandem::os
