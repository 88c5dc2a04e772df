// What the operator can do for each primary/secondary status combination
// (the guide's table 4, R-ST-1). Pure.
#pragma once

#include <string>

#include "ha/types.h"

namespace tandem::ha {

std::string PossibleAction(HostStatus primary, HostStatus secondary);

}  // namespace tandem::ha
