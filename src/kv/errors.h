#pragma once

// etcd's errors, with the gRPC codes and messages etcd 3.4 returns for them
// (etcdserver/api/v3rpc/rpctypes/error.go), so clients that match on them keep working.

#include "base/status.h"

namespace synod::kv {

inline Status EmptyKeyError() {
  return absl::InvalidArgumentError("etcdserver: key is not provided");
}
inline Status KeyNotFoundError() {
  return absl::InvalidArgumentError("etcdserver: key not found");
}
inline Status ValueProvidedError() {
  return absl::InvalidArgumentError("etcdserver: value is provided");
}
inline Status LeaseProvidedError() {
  return absl::InvalidArgumentError("etcdserver: lease is provided");
}
inline Status TooManyOpsError() {
  return absl::InvalidArgumentError("etcdserver: too many operations in txn request");
}
inline Status DuplicateKeyError() {
  return absl::InvalidArgumentError("etcdserver: duplicate key given in txn request");
}
inline Status CompactedError() {
  return absl::OutOfRangeError("etcdserver: mvcc: required revision has been compacted");
}
inline Status FutureRevisionError() {
  return absl::OutOfRangeError("etcdserver: mvcc: required revision is a future revision");
}
inline Status NoSpaceError() {
  return absl::ResourceExhaustedError("etcdserver: mvcc: database space exceeded");
}
inline Status LeaseNotFoundError() {
  return absl::NotFoundError("etcdserver: requested lease not found");
}
inline Status LeaseExistsError() {
  return absl::FailedPreconditionError("etcdserver: lease already exists");
}
inline Status LeaseTtlTooLargeError() {
  return absl::OutOfRangeError("etcdserver: too large lease TTL");
}

}  // namespace synod::kv
