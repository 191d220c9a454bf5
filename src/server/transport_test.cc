// The peer transport: Raft messages survive the wire intact, arrive in order, never block the
// sender when the peer is down, get through once it is up, never cross clusters, and snapshots
// and lease calls reach the other member.

#include "server/transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/raft_codec.h"

namespace synod::server {
namespace {

using namespace std::chrono_literals;

raft::Message RoundTrip(const raft::Message& message) {
  synodpb::RaftMessage encoded;
  EncodeRaftMessage(message, &encoded);
  synodpb::RaftMessage parsed;
  EXPECT_TRUE(parsed.ParseFromString(encoded.SerializeAsString()));
  auto decoded = DecodeRaftMessage(parsed);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return decoded.ok() ? *decoded : raft::Message{};
}

void ExpectSame(const raft::Message& a, const raft::Message& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.to, b.to);
  EXPECT_EQ(a.term, b.term);
  EXPECT_EQ(a.log_index, b.log_index);
  EXPECT_EQ(a.log_term, b.log_term);
  EXPECT_EQ(a.entries, b.entries);
  EXPECT_EQ(a.commit, b.commit);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.reject, b.reject);
  EXPECT_EQ(a.reject_hint_index, b.reject_hint_index);
  EXPECT_EQ(a.reject_hint_term, b.reject_hint_term);
  EXPECT_EQ(a.leadership_transfer, b.leadership_transfer);
  EXPECT_EQ(a.read_round, b.read_round);
  EXPECT_EQ(a.read_context, b.read_context);
  EXPECT_EQ(a.snapshot, b.snapshot);
}

TEST(RaftCodecTest, EveryFieldSurvivesTheWire) {
  raft::Message append;
  append.type = raft::MessageType::kAppendEntries;
  append.from = NodeId(1);
  append.to = NodeId(2);
  append.term = Term(7);
  append.log_index = Index(10);
  append.log_term = Term(6);
  append.commit = Index(9);
  append.entries.push_back({Term(7), Index(11), raft::EntryType::kNormal, "put x", {}});
  append.entries.push_back({Term(7), Index(12), raft::EntryType::kEmpty, "", {}});
  append.entries.push_back({Term(7), Index(13), raft::EntryType::kConfig, "",
                            raft::Membership{{NodeId(1), NodeId(2)}, {NodeId(3)}}});
  ExpectSame(RoundTrip(append), append);

  raft::Message response;
  response.type = raft::MessageType::kAppendEntriesResponse;
  response.from = NodeId(2);
  response.to = NodeId(1);
  response.reject = true;
  response.index = Index(10);
  response.reject_hint_index = Index(8);
  response.reject_hint_term = Term(5);
  ExpectSame(RoundTrip(response), response);

  raft::Message read;
  read.type = raft::MessageType::kReadIndex;
  read.read_context = std::string("ctx\0binary", 10);
  read.read_round = 42;
  read.leadership_transfer = true;
  ExpectSame(RoundTrip(read), read);

  raft::Message snapshot;
  snapshot.type = raft::MessageType::kInstallSnapshot;
  snapshot.snapshot = raft::Snapshot{{Index(100), Term(4), {{NodeId(1), NodeId(2)}, {}}}, "img"};
  ExpectSame(RoundTrip(snapshot), snapshot);
}

TEST(RaftCodecTest, MalformedMessagesAreRefused) {
  synodpb::RaftMessage bad_type;
  bad_type.set_type(99);
  EXPECT_FALSE(DecodeRaftMessage(bad_type).ok());

  synodpb::RaftMessage bad_entry;
  bad_entry.add_entries()->set_type(7);
  EXPECT_FALSE(DecodeRaftMessage(bad_entry).ok());

  synodpb::RaftMessage bad_membership;
  synodpb::Entry* entry = bad_membership.add_entries();
  entry->set_type(static_cast<uint32_t>(raft::EntryType::kConfig));
  entry->mutable_membership()->add_voters(1);
  entry->mutable_membership()->add_learners(1);  // Both voter and learner.
  EXPECT_FALSE(DecodeRaftMessage(bad_membership).ok());
}

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// What one transport's handlers received.
struct Inbox {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<raft::Message> messages;
  std::vector<std::pair<NodeId, std::string>> forwards;

  bool WaitFor(size_t messages_count, size_t forwards_count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout, [&] {
      return messages.size() >= messages_count && forwards.size() >= forwards_count;
    });
  }
};

class TransportTest : public ::testing::Test {
 protected:
  std::unique_ptr<Transport> Start(NodeId self, int port, Inbox* inbox, uint64_t cluster_id = 7) {
    PeerHandlers handlers;
    handlers.on_raft_message = [inbox](raft::Message message) {
      std::lock_guard lock(inbox->mutex);
      inbox->messages.push_back(std::move(message));
      inbox->changed.notify_all();
    };
    handlers.on_forwarded_proposal = [inbox](NodeId from, std::string request) {
      std::lock_guard lock(inbox->mutex);
      inbox->forwards.emplace_back(from, std::move(request));
      inbox->changed.notify_all();
    };
    handlers.on_lease_renew = [](const etcdserverpb::LeaseKeepAliveRequest& request,
                                 etcdserverpb::LeaseKeepAliveResponse* response) {
      response->set_id(request.id());
      response->set_ttl(30);
      return grpc::Status::OK;
    };
    handlers.on_lease_time_to_live = [](const etcdserverpb::LeaseTimeToLiveRequest& request,
                                        etcdserverpb::LeaseTimeToLiveResponse* response) {
      response->set_id(request.id());
      response->set_ttl(-1);
      return grpc::Status::OK;
    };
    handlers.on_fetch_snapshot = [](Index min_applied_index)
        -> Result<std::function<Result<std::optional<std::string>>()>> {
      if (min_applied_index > Index(100)) {
        return absl::FailedPreconditionError("not applied that far yet");
      }
      auto produced = std::make_shared<int>(0);
      return std::function<Result<std::optional<std::string>>()>(
          [produced]() -> Result<std::optional<std::string>> {
            if (*produced == 5) return std::optional<std::string>();
            return std::optional<std::string>("chunk" + std::to_string((*produced)++));
          });
    };
    TransportOptions options;
    options.self = self;
    options.cluster_id = cluster_id;
    options.listen_urls = {"http://127.0.0.1:" + std::to_string(port)};
    auto transport = Transport::Start(options, handlers);
    EXPECT_TRUE(transport.ok()) << transport.status();
    return transport.ok() ? std::move(*transport) : nullptr;
  }

  static raft::Message Heartbeat(NodeId from, NodeId to, uint64_t round) {
    raft::Message message;
    message.type = raft::MessageType::kHeartbeat;
    message.from = from;
    message.to = to;
    message.read_round = round;
    return message;
  }

  const int port_a_ = FreePort();
  const int port_b_ = FreePort();
  Inbox inbox_a_;
  Inbox inbox_b_;
};

TEST_F(TransportTest, MessagesAndForwardsArriveInOrder) {
  auto a = Start(NodeId(1), port_a_, &inbox_a_);
  auto b = Start(NodeId(2), port_b_, &inbox_b_);
  a->SetPeer(NodeId(2), {"http://127.0.0.1:" + std::to_string(port_b_)});
  // Messages sent while the stream is still being set up may be dropped (Raft tolerates that);
  // once one has arrived the stream is up, and what follows arrives in order.
  bool connected = false;
  for (int attempt = 0; attempt < 200 && !connected; ++attempt) {
    a->Send(Heartbeat(NodeId(1), NodeId(2), 0));
    connected = inbox_b_.WaitFor(1, 0, 50ms);
  }
  ASSERT_TRUE(connected);
  size_t probes = 0;
  {
    std::this_thread::sleep_for(100ms);  // Let stray probes land before counting them.
    std::lock_guard lock(inbox_b_.mutex);
    probes = inbox_b_.messages.size();
  }
  for (uint64_t round = 1; round <= 100; ++round) a->Send(Heartbeat(NodeId(1), NodeId(2), round));
  a->SendForward(NodeId(2), "request bytes");
  ASSERT_TRUE(inbox_b_.WaitFor(probes + 100, 1, 10s));
  std::lock_guard lock(inbox_b_.mutex);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(inbox_b_.messages[probes + i].read_round, i + 1);
  EXPECT_EQ(inbox_b_.forwards[0], std::pair(NodeId(1), std::string("request bytes")));
  EXPECT_TRUE(a->IsConnected(NodeId(2)));
}

TEST_F(TransportTest, ADownPeerNeverBlocksTheSenderAndIsReachedOnceUp) {
  auto a = Start(NodeId(1), port_a_, &inbox_a_);
  a->SetPeer(NodeId(2), {"http://127.0.0.1:" + std::to_string(port_b_)});
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t round = 1; round <= 10000; ++round) a->Send(Heartbeat(NodeId(1), NodeId(2), round));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_GT(a->stats().dropped, 0u);

  auto b = Start(NodeId(2), port_b_, &inbox_b_);
  bool reached = false;
  for (int attempt = 0; attempt < 100 && !reached; ++attempt) {
    a->Send(Heartbeat(NodeId(1), NodeId(2), 1000000));
    reached = inbox_b_.WaitFor(1, 0, 100ms);
  }
  EXPECT_TRUE(reached);
}

TEST_F(TransportTest, MembersOfAnotherClusterAreNotHeard) {
  auto a = Start(NodeId(1), port_a_, &inbox_a_, /*cluster_id=*/7);
  auto b = Start(NodeId(2), port_b_, &inbox_b_, /*cluster_id=*/8);
  a->SetPeer(NodeId(2), {"http://127.0.0.1:" + std::to_string(port_b_)});
  for (int i = 0; i < 10; ++i) a->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  etcdserverpb::LeaseKeepAliveResponse response;
  grpc::Status status = a->LeaseRenew(NodeId(2), {}, &response, 2000ms);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("cluster"));
  EXPECT_FALSE(inbox_b_.WaitFor(1, 0, 500ms));
}

TEST_F(TransportTest, SnapshotsAndLeaseCallsReachTheOtherMember) {
  auto a = Start(NodeId(1), port_a_, &inbox_a_);
  auto b = Start(NodeId(2), port_b_, &inbox_b_);
  a->SetPeer(NodeId(2), {"http://127.0.0.1:" + std::to_string(port_b_)});

  std::vector<std::string> chunks;
  Status status = a->FetchSnapshot(
      NodeId(2), Index(50),
      [&](std::string_view chunk) {
        chunks.emplace_back(chunk);
        return absl::OkStatus();
      },
      5000ms);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(chunks, ::testing::ElementsAre("chunk0", "chunk1", "chunk2", "chunk3", "chunk4"));

  status = a->FetchSnapshot(
      NodeId(2), Index(50), [](std::string_view) { return absl::DataLossError("bad chunk"); },
      5000ms);
  EXPECT_EQ(status, absl::DataLossError("bad chunk"));

  status = a->FetchSnapshot(
      NodeId(2), Index(500), [](std::string_view) { return absl::OkStatus(); }, 5000ms);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);

  etcdserverpb::LeaseKeepAliveRequest renew;
  renew.set_id(99);
  etcdserverpb::LeaseKeepAliveResponse renewed;
  ASSERT_TRUE(a->LeaseRenew(NodeId(2), renew, &renewed, 5000ms).ok());
  EXPECT_EQ(renewed.id(), 99);
  EXPECT_EQ(renewed.ttl(), 30);
  etcdserverpb::LeaseTimeToLiveRequest ask;
  ask.set_id(5);
  etcdserverpb::LeaseTimeToLiveResponse answer;
  ASSERT_TRUE(a->LeaseTimeToLive(NodeId(2), ask, &answer, 5000ms).ok());
  EXPECT_EQ(answer.ttl(), -1);
}

TEST_F(TransportTest, ATransportWhosePeerIsDownStopsPromptly) {
  auto a = Start(NodeId(1), port_a_, &inbox_a_);
  a->SetPeer(NodeId(2), {"http://127.0.0.1:" + std::to_string(port_b_)});
  for (int i = 0; i < 100; ++i) a->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  std::this_thread::sleep_for(100ms);  // Let the sender try, fail and back off.
  const auto start = std::chrono::steady_clock::now();
  a.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

}  // namespace
}  // namespace synod::server
