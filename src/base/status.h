// Operating errors (not leader, bad request, corrupt file) travel as absl::Status, whose codes
// are gRPC's: the server maps them to the status etcd would return without translation.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace synod {

using Status = absl::Status;
template <typename T>
using Result = absl::StatusOr<T>;

}  // namespace synod
