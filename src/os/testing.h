// Test helpers for code that runs on an EventLoop.
#pragma once

#include "os/event_loop.h"

namespace tandem::os {

// Runs `loop` until something calls Stop() or `deadline_ms` pass, so a bug
// fails a test instead of hanging it. Returns false if the deadline stopped it.
inline bool RunWithDeadline(EventLoop& loop, int64_t deadline_ms) {
  bool timed_out = false;
  EventLoop::TimerId deadline = loop.AddTimer(deadline_ms, [&] {
    timed_out = true;
    loop.Stop();
  });
  loop.Run();
  loop.CancelTimer(deadline);
  return !timed_out;
}

}  // namespace tandem::os
