// The peer transport over real gRPC on 127.0.0.1: messages arrive in order and intact, a down,
// slow or silent peer never blocks the sender or the other peers, a peer that comes up or
// restarts is reached, members of another cluster (or the wrong member) are refused, snapshots
// stream in order, lease calls reach the other member and bring its answer back verbatim, and a
// transport stops promptly whatever its peers do.

#include "server/transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace synod::server {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kCluster = 7;
// Generous: a loaded CI machine may be slow, and passing tests return long before it.
constexpr auto kArrivalTimeout = 5s;

// What one member's handlers saw, in order.
struct Received {
  std::optional<raft::Message> raft;
  NodeId forward_from;
  std::string forward;
  // A Multi-Paxos message (members on the multipaxos engine).
  std::optional<PeerMessage> multipaxos;
};

// Stands in for the node behind a transport.
class FakeNode {
 public:
  FakeNode() {
    renew = [](const etcdserverpb::LeaseKeepAliveRequest& request,
               etcdserverpb::LeaseKeepAliveResponse* response) {
      response->set_id(request.id());
      response->set_ttl(30);
      return grpc::Status::OK;
    };
    time_to_live = [](const etcdserverpb::LeaseTimeToLiveRequest& request,
                      etcdserverpb::LeaseTimeToLiveResponse* response) {
      response->set_id(request.id());
      response->set_ttl(-1);
      return grpc::Status::OK;
    };
    snapshot = [](Index) -> Result<std::function<Result<std::optional<std::string>>()>> {
      return absl::UnimplementedError("no snapshot in this test");
    };
  }

  // Set before the transport starts; called on its gRPC threads.
  std::function<grpc::Status(const etcdserverpb::LeaseKeepAliveRequest&,
                             etcdserverpb::LeaseKeepAliveResponse*)>
      renew;
  std::function<grpc::Status(const etcdserverpb::LeaseTimeToLiveRequest&,
                             etcdserverpb::LeaseTimeToLiveResponse*)>
      time_to_live;
  std::function<Result<std::function<Result<std::optional<std::string>>()>>(Index)> snapshot;
  // Membership handlers; left unset unless a test sets them.
  std::function<grpc::Status(const synodpb::MemberChangeRequest&, synodpb::MemberChangeResponse*)>
      change_members;
  std::function<grpc::Status(synodpb::MembersResponse*)> members;
  std::function<bool(NodeId)> is_removed;
  std::function<void()> on_removed;
  // Whether this member runs the multipaxos engine (takes its messages); set before Start.
  bool multipaxos = false;

  PeerHandlers Handlers() {
    PeerHandlers handlers;
    handlers.on_raft_message = [this](raft::Message message) {
      Add(Received{std::move(message), kNoNode, "", std::nullopt});
    };
    handlers.on_forwarded_proposal = [this](NodeId from, std::string request) {
      Add(Received{std::nullopt, from, std::move(request), std::nullopt});
    };
    if (multipaxos) {
      handlers.on_multipaxos_message = [this](PeerMessage message) {
        Add(Received{std::nullopt, kNoNode, "", std::move(message)});
      };
    }
    handlers.on_lease_renew = [this](const auto& request, auto* response) {
      return renew(request, response);
    };
    handlers.on_lease_time_to_live = [this](const auto& request, auto* response) {
      return time_to_live(request, response);
    };
    handlers.on_fetch_snapshot = [this](Index index) { return snapshot(index); };
    handlers.on_change_members = change_members;
    handlers.on_members = members;
    handlers.is_removed_member = is_removed;
    handlers.on_removed = on_removed;
    return handlers;
  }

  // Waits until at least `count` messages arrived; returns them all.
  std::vector<Received> WaitFor(size_t count, std::chrono::milliseconds timeout = kArrivalTimeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return received_.size() >= count; });
    return received_;
  }

  size_t count() {
    std::lock_guard lock(mutex_);
    return received_.size();
  }

  // While closed, the message handler blocks: a peer that stopped reading.
  void CloseGate() {
    std::lock_guard lock(mutex_);
    gate_closed_ = true;
  }
  void OpenGate() {
    std::lock_guard lock(mutex_);
    gate_closed_ = false;
    changed_.notify_all();
  }

 private:
  void Add(Received received) {
    std::unique_lock lock(mutex_);
    received_.push_back(std::move(received));
    changed_.notify_all();
    changed_.wait(lock, [&] { return !gate_closed_; });
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Received> received_;
  bool gate_closed_ = false;
};

TransportOptions TestOptions(NodeId self, std::string url = "http://127.0.0.1:0") {
  TransportOptions options;
  options.self = self;
  options.cluster_id = kCluster;
  options.listen_urls = {std::move(url)};
  // Quick retries keep the tests short; the defaults are for production.
  options.reconnect_backoff_min = 20ms;
  options.reconnect_backoff_max = 200ms;
  return options;
}

struct Member {
  // A handler blocked at a closed gate would keep the transport from stopping, even when a test
  // fails before it opens the gate.
  ~Member() {
    node.OpenGate();
    transport.reset();
  }

  FakeNode node;  // First: it outlives the transport whose handlers call it.
  std::unique_ptr<Transport> transport;

  const std::string& url() const { return transport->listen_urls().front(); }
};

std::unique_ptr<Member> StartMember(TransportOptions options,
                                    const std::function<void(FakeNode&)>& setup = {}) {
  auto member = std::make_unique<Member>();
  if (setup) setup(member->node);
  auto transport = Transport::Start(std::move(options), member->node.Handlers());
  EXPECT_TRUE(transport.ok()) << transport.status();
  if (!transport.ok()) return nullptr;
  member->transport = std::move(*transport);
  return member;
}

std::unique_ptr<Member> StartMember(NodeId self) {
  return StartMember(TestOptions(self));
}

raft::Message Heartbeat(NodeId from, NodeId to, uint64_t round) {
  raft::Message message;
  message.type = raft::MessageType::kHeartbeat;
  message.from = from;
  message.to = to;
  message.term = Term(3);
  message.read_round = round;
  return message;
}

// An AppendEntries using every field, with a configuration entry and a snapshot.
raft::Message FullAppend(NodeId from, NodeId to) {
  raft::Message message;
  message.type = raft::MessageType::kAppendEntries;
  message.from = from;
  message.to = to;
  message.term = Term(9);
  message.log_index = Index(100);
  message.log_term = Term(8);
  message.entries.push_back({Term(9), Index(101), raft::EntryType::kNormal, "put a", {}});
  message.entries.push_back({Term(9), Index(102), raft::EntryType::kConfig, "",
                             raft::Membership{{NodeId(1), NodeId(2)}, {NodeId(3)}}});
  message.commit = Index(99);
  message.index = Index(5);
  message.reject = true;
  message.reject_hint_index = Index(4);
  message.reject_hint_term = Term(2);
  message.leadership_transfer = true;
  message.read_round = 77;
  message.read_context = std::string("r\0c", 3);
  message.snapshot = raft::Snapshot{{Index(90), Term(7), {{NodeId(1)}, {}}}, "meta"};
  return message;
}

// A port nothing listens on (as far as this process can tell).
std::string UnusedUrl() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
}

// A listener that completes TCP handshakes (the kernel does) but never accepts or answers: a
// peer that hangs, or a black-holed address.
class SilentListener {
 public:
  SilentListener() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t length = sizeof(address);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    url_ = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  }
  ~SilentListener() { ::close(fd_); }
  const std::string& url() const { return url_; }

 private:
  int fd_;
  std::string url_;
};

bool Eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = kArrivalTimeout) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

TEST(PeerUrlTest, OnlyPlainHttpHostPortIsAccepted) {
  EXPECT_EQ(*PeerUrlToTarget("http://127.0.0.1:2380"), "127.0.0.1:2380");
  EXPECT_EQ(*PeerUrlToTarget("http://127.0.0.1:2380/"), "127.0.0.1:2380");
  EXPECT_EQ(*PeerUrlToTarget("HTTP://node-1.example:2380"), "node-1.example:2380");
  EXPECT_EQ(*PeerUrlToTarget("http://[::1]:2380"), "[::1]:2380");

  Result<std::string> https = PeerUrlToTarget("https://127.0.0.1:2380");
  EXPECT_EQ(https.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(https.status().message()), HasSubstr("TLS is not supported"));
  for (const char* bad :
       {"127.0.0.1:2380", "unix://socket", "http://127.0.0.1", "http://127.0.0.1:2380/path",
        "http://user@127.0.0.1:2380", "http://::1:2380", "http://127.0.0.1:65536",
        "http://127.0.0.1:x", "http://:2380"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(PeerUrlToTarget(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(TransportStartTest, APortInUseIsRefusedWithTheReason) {
  auto first = StartMember(NodeId(1));
  ASSERT_NE(first, nullptr);
  // Without SO_REUSEPORT off, this second member would bind too and share the port.
  FakeNode node;
  auto second = Transport::Start(TestOptions(NodeId(2), first->url()), node.Handlers());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  const std::string host_port = first->url().substr(std::string("http://").size());
  EXPECT_EQ(second.status().message(), "listen on " + host_port + ": address already in use");
}

TEST(TransportStartTest, InvalidOptionsAreRefusedNotAdjusted) {
  FakeNode node;
  auto refused = [&](const std::function<void(TransportOptions&)>& change) {
    TransportOptions options = TestOptions(NodeId(1));
    change(options);
    return Transport::Start(options, node.Handlers()).status();
  };
  Status tls = refused([](auto& o) { o.listen_urls = {"https://127.0.0.1:0"}; });
  EXPECT_EQ(tls.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tls.message()), HasSubstr("TLS is not supported"));
  EXPECT_EQ(refused([](auto& o) { o.listen_urls.clear(); }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused([](auto& o) { o.self = kNoNode; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused([](auto& o) { o.queued_messages_max = 0; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused([](auto& o) { o.queued_messages_max = kPeerQueuedMessagesLimit + 1; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused([](auto& o) { o.batch_bytes_max = kPeerMessageBytesMax + 1; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused([](auto& o) { o.reconnect_backoff_min = 300ms; }).code(),
            absl::StatusCode::kInvalidArgument);  // Above the max of 200 ms.
  EXPECT_EQ(refused([](auto& o) { o.handshake_timeout = 0ms; }).code(),
            absl::StatusCode::kInvalidArgument);
}

// Members on the multipaxos engine exchange its messages, follower reads among them, on the
// same stream; a member on the raft engine refuses them (counted) and goes on taking its own.
TEST(TransportTest, MultiPaxosMessagesReachOnlyAMultiPaxosMember) {
  auto a = StartMember(NodeId(1));
  auto paxos = StartMember(TestOptions(NodeId(2)), [](FakeNode& node) { node.multipaxos = true; });
  auto raft_only = StartMember(NodeId(3));
  a->transport->SetPeer(NodeId(2), {paxos->url()});
  a->transport->SetPeer(NodeId(3), {raft_only->url()});
  multipaxos::Message accept;
  accept.type = multipaxos::MessageType::kAccept;
  accept.from = NodeId(1);
  accept.to = NodeId(2);
  accept.ballot = multipaxos::BallotNumber{Ballot(4), NodeId(1)};
  accept.entries.push_back({Term(4), Index(7), raft::EntryType::kNormal, "put a", {}});
  multipaxos::Message read_answer;
  read_answer.type = multipaxos::MessageType::kReadIndexResponse;
  read_answer.from = NodeId(1);
  read_answer.to = NodeId(2);
  read_answer.ballot = accept.ballot;
  read_answer.index = Index(7);
  read_answer.read_context = "17";
  a->transport->Send(accept);
  a->transport->Send(read_answer);
  const std::vector<Received> received = paxos->node.WaitFor(2);
  ASSERT_EQ(received.size(), 2u);
  ASSERT_TRUE(received[0].multipaxos.has_value());
  const auto& got = std::get<multipaxos::Message>(*received[0].multipaxos);
  EXPECT_EQ(got.ballot, accept.ballot);
  EXPECT_EQ(got.entries, accept.entries);
  ASSERT_TRUE(received[1].multipaxos.has_value());
  const auto& answer = std::get<multipaxos::Message>(*received[1].multipaxos);
  EXPECT_EQ(answer.type, multipaxos::MessageType::kReadIndexResponse);
  EXPECT_EQ(answer.index, Index(7));
  EXPECT_EQ(answer.read_context, "17");

  accept.to = NodeId(3);
  a->transport->Send(accept);
  a->transport->Send(Heartbeat(NodeId(1), NodeId(3), 1));
  const std::vector<Received> taken = raft_only->node.WaitFor(1);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_TRUE(taken[0].raft.has_value());
  EXPECT_EQ(raft_only->transport->stats().refused, 1u);
}

TEST(TransportTest, MessagesAndForwardsArriveInOrderAndIntact) {
  auto a = StartMember(NodeId(1));
  auto b = StartMember(NodeId(2));
  a->transport->SetPeer(NodeId(2), {b->url()});
  // Messages queued while the first connection is made wait for it (ADownPeer... covers that);
  // waiting here keeps a slow CI machine's first handshake out of what this test checks.
  ASSERT_TRUE(Eventually([&] { return a->transport->IsConnected(NodeId(2)); }));
  constexpr uint64_t kCount = 500;
  for (uint64_t i = 0; i < kCount; ++i) {
    if (i % 3 == 0) {
      a->transport->SendForward(NodeId(2), "request " + std::to_string(i));
    } else {
      a->transport->Send(Heartbeat(NodeId(1), NodeId(2), i));
    }
  }
  a->transport->Send(FullAppend(NodeId(1), NodeId(2)));

  const std::vector<Received> received = b->node.WaitFor(kCount + 1);
  ASSERT_EQ(received.size(), kCount + 1);
  for (uint64_t i = 0; i < kCount; ++i) {
    SCOPED_TRACE(i);
    if (i % 3 == 0) {
      EXPECT_FALSE(received[i].raft.has_value());
      EXPECT_EQ(received[i].forward_from, NodeId(1));
      EXPECT_EQ(received[i].forward, "request " + std::to_string(i));
    } else {
      ASSERT_TRUE(received[i].raft.has_value());
      EXPECT_EQ(received[i].raft->read_round, i);
    }
  }
  const raft::Message expected = FullAppend(NodeId(1), NodeId(2));
  const raft::Message& actual = *received[kCount].raft;
  EXPECT_EQ(actual.type, expected.type);
  EXPECT_EQ(actual.entries, expected.entries);
  EXPECT_EQ(actual.snapshot, expected.snapshot);
  EXPECT_EQ(actual.read_context, expected.read_context);
  EXPECT_EQ(actual.reject_hint_term, expected.reject_hint_term);

  EXPECT_TRUE(a->transport->IsConnected(NodeId(2)));
  // Counted when the write returns, which may be a moment after B has the messages.
  EXPECT_TRUE(Eventually([&] { return a->transport->stats().sent == kCount + 1; }));
  EXPECT_EQ(a->transport->stats().dropped, 0u);
  EXPECT_EQ(b->transport->stats().received, kCount + 1);
  EXPECT_EQ(b->transport->stats().refused, 0u);
}

TEST(TransportTest, LargeMessagesAndManyBatchesGetThrough) {
  TransportOptions options = TestOptions(NodeId(1));
  options.batch_bytes_max = 256 << 10;  // Forces many batches below.
  auto a = StartMember(options);
  auto b = StartMember(NodeId(2));
  a->transport->SetPeer(NodeId(2), {b->url()});
  ASSERT_TRUE(Eventually([&] { return a->transport->IsConnected(NodeId(2)); }));
  // Beyond gRPC's default 4 MiB message limit, as a large append or snapshot chunk would be.
  raft::Message big = Heartbeat(NodeId(1), NodeId(2), 0);
  big.type = raft::MessageType::kAppendEntries;
  big.entries.push_back(
      {Term(3), Index(1), raft::EntryType::kNormal, std::string(6 << 20, 'b'), {}});
  a->transport->Send(big);
  for (uint64_t i = 1; i <= 100; ++i) {
    raft::Message message = Heartbeat(NodeId(1), NodeId(2), i);
    message.read_context = std::string(10 << 10, static_cast<char>(i));
    a->transport->Send(std::move(message));
  }
  const std::vector<Received> received = b->node.WaitFor(101);
  ASSERT_EQ(received.size(), 101u);
  EXPECT_EQ(received[0].raft->entries, big.entries);
  for (uint64_t i = 1; i <= 100; ++i) {
    EXPECT_EQ(received[i].raft->read_round, i);
    EXPECT_EQ(received[i].raft->read_context, std::string(10 << 10, static_cast<char>(i)));
  }
  EXPECT_EQ(a->transport->stats().dropped, 0u);
}

TEST(TransportTest, ADownPeerNeverBlocksSendAndIsReachedOnceUp) {
  TransportOptions options = TestOptions(NodeId(1));
  options.queued_messages_max = 100;
  auto a = StartMember(options);
  const std::string url = UnusedUrl();
  a->transport->SetPeer(NodeId(2), {url});

  constexpr uint64_t kCount = 10000;
  const auto start = Clock::now();
  for (uint64_t round = 1; round <= kCount; ++round) {
    a->transport->Send(Heartbeat(NodeId(1), NodeId(2), round));
  }
  EXPECT_LT(Clock::now() - start, 1s);
  EXPECT_FALSE(a->transport->IsConnected(NodeId(2)));
  // Nothing was sent; at most a queue's worth is still waiting, the rest was dropped.
  EXPECT_EQ(a->transport->stats().sent, 0u);
  EXPECT_GE(a->transport->stats().dropped, kCount - options.queued_messages_max);

  auto b = StartMember(TestOptions(NodeId(2), url));
  ASSERT_NE(b, nullptr);
  // The sender keeps trying on its own, without a message to send.
  ASSERT_TRUE(Eventually([&] { return a->transport->IsConnected(NodeId(2)); }));
  // The queued messages leave the queue when the new stream's first write takes them, a moment
  // after the connection is up; until then the queue is full and would drop the next message
  // (Send never blocks). So the new message goes once every old one is sent or dropped.
  ASSERT_TRUE(Eventually([&] {
    const Transport::Stats stats = a->transport->stats();
    return stats.sent + stats.dropped == kCount;
  }));
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 424242));
  // Some of the old messages may have gone out with the first stream; the new one is last.
  const std::vector<Received> received = b->node.WaitFor(1);
  ASSERT_FALSE(received.empty());
  EXPECT_TRUE(Eventually([&] {
    auto all = b->node.WaitFor(1);
    return all.back().raft->read_round == 424242;
  }));
}

TEST(TransportTest, APeerRestartCostsNoMessage) {
  auto a = StartMember(NodeId(1));
  auto b = StartMember(NodeId(2));
  const std::string url = b->url();
  a->transport->SetPeer(NodeId(2), {url});
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  ASSERT_EQ(b->node.WaitFor(1).size(), 1u);

  b.reset();  // The peer goes away...
  ASSERT_TRUE(Eventually([&] { return !a->transport->IsConnected(NodeId(2)); }));
  b = StartMember(TestOptions(NodeId(2), url));  // ...and comes back on the same address.
  ASSERT_NE(b, nullptr);
  // Sent at once, without waiting for the sender to notice: whether the sender reconnected on
  // its own or finds the old stream dead at this write, the message must get through.
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 2));
  const std::vector<Received> received = b->node.WaitFor(1);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].raft->read_round, 2u);
  EXPECT_EQ(a->transport->stats().dropped, 0u);
  EXPECT_EQ(a->transport->stats().reconnects, 1u);
  EXPECT_TRUE(a->transport->IsConnected(NodeId(2)));
}

TEST(TransportTest, AStuckPeerDelaysOnlyItself) {
  TransportOptions options = TestOptions(NodeId(1));
  options.queued_messages_max = 50;
  auto a = StartMember(options);
  auto b = StartMember(NodeId(2));
  auto c = StartMember(NodeId(3));
  a->transport->SetPeer(NodeId(2), {b->url()});
  a->transport->SetPeer(NodeId(3), {c->url()});
  b->node.CloseGate();  // B takes the first message and then stops reading.

  // Feed B until A's sender stops making progress: every buffer between it and B's stuck
  // handler (gRPC's flow-control windows, both sockets) is full, and its write blocks.
  uint64_t fed_bytes = 0;
  auto stalled = [&] {
    const uint64_t sent = a->transport->stats().sent;
    for (int i = 0; i < 8; ++i) {
      raft::Message message = Heartbeat(NodeId(1), NodeId(2), i);
      message.read_context = std::string(1 << 20, 'x');
      fed_bytes += 1 << 20;
      a->transport->Send(std::move(message));
    }
    std::this_thread::sleep_for(100ms);
    return a->transport->stats().sent == sent;
  };
  ASSERT_TRUE(Eventually(stalled, 5s)) << "fed " << (fed_bytes >> 20) << " MiB";
  EXPECT_EQ(b->node.count(), 1u);

  // A's sender for B is stuck, so its queue fills: Send returns at once and drops.
  const uint64_t dropped_before = a->transport->stats().dropped;
  const auto start = Clock::now();
  for (uint64_t i = 0; i < 200; ++i) a->transport->Send(Heartbeat(NodeId(1), NodeId(2), i));
  EXPECT_LT(Clock::now() - start, 200ms);
  EXPECT_GE(a->transport->stats().dropped - dropped_before, 200 - options.queued_messages_max);

  // Meanwhile C hears everything, promptly (fewer than its queue holds, so none may drop).
  for (uint64_t i = 0; i < 40; ++i) a->transport->Send(Heartbeat(NodeId(1), NodeId(3), i));
  const std::vector<Received> to_c = c->node.WaitFor(40, 2s);
  ASSERT_EQ(to_c.size(), 40u);
  for (uint64_t i = 0; i < 40; ++i) EXPECT_EQ(to_c[i].raft->read_round, i);

  b->node.OpenGate();
  EXPECT_GT(b->node.WaitFor(2).size(), 1u);  // And B resumes.
}

TEST(TransportTest, AMemberOfAnotherClusterIsRefused) {
  auto a = StartMember(NodeId(1));
  TransportOptions other = TestOptions(NodeId(2));
  other.cluster_id = 8;
  auto b = StartMember(other);
  a->transport->SetPeer(NodeId(2), {b->url()});
  for (int i = 0; i < 10; ++i) a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));

  etcdserverpb::LeaseKeepAliveResponse response;
  grpc::Status status = a->transport->LeaseRenew(NodeId(2), {}, &response, 2000ms);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(status.error_message(), "peer is of cluster 7, this node is of cluster 8");
  Status fetch = a->transport->FetchSnapshot(
      NodeId(2), Index(1), [](std::string_view) { return absl::OkStatus(); }, 2000ms);
  EXPECT_EQ(fetch.code(), absl::StatusCode::kFailedPrecondition);

  // The stream never opens: the handshake is refused, and the messages are dropped.
  ASSERT_TRUE(Eventually([&] { return a->transport->stats().dropped == 10; }));
  EXPECT_FALSE(a->transport->IsConnected(NodeId(2)));
  EXPECT_EQ(b->node.count(), 0u);
  EXPECT_GE(b->transport->stats().refused, 3u);  // Handshake, lease call, snapshot fetch.
}

TEST(TransportTest, AMemberReachedUnderAnotherIdIsRefused) {
  auto a = StartMember(NodeId(1));
  auto b = StartMember(NodeId(3));
  a->transport->SetPeer(NodeId(2), {b->url()});  // A thinks member 2 lives there.
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  etcdserverpb::LeaseTimeToLiveResponse response;
  grpc::Status status = a->transport->LeaseTimeToLive(NodeId(2), {}, &response, 2000ms);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(status.error_message(), "peer addressed member 2, this node is member 3");
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(b->node.count(), 0u);
  EXPECT_FALSE(a->transport->IsConnected(NodeId(2)));
}

TEST(TransportTest, SnapshotsStreamInOrder) {
  constexpr int kChunks = 20;
  std::atomic<uint64_t> asked_index = 0;
  auto b = StartMember(TestOptions(NodeId(2)), [&](FakeNode& node) {
    node.snapshot = [&](Index min_applied_index)
        -> Result<std::function<Result<std::optional<std::string>>()>> {
      asked_index = min_applied_index.value();
      if (min_applied_index > Index(100)) {
        return absl::FailedPreconditionError("not applied that far yet");
      }
      auto produced = std::make_shared<int>(0);
      const bool fail_midway = min_applied_index == Index(66);
      return std::function<Result<std::optional<std::string>>()>(
          [produced, fail_midway]() -> Result<std::optional<std::string>> {
            if (fail_midway && *produced == 3) return absl::DataLossError("disk read failed");
            if (*produced == kChunks) return std::optional<std::string>();
            const int i = (*produced)++;
            // One chunk beyond gRPC's default 4 MiB message limit.
            if (i == 10) return std::optional<std::string>(std::string(5 << 20, 'z'));
            return std::optional<std::string>("chunk" + std::to_string(i));
          });
    };
  });
  auto a = StartMember(NodeId(1));
  a->transport->SetPeer(NodeId(2), {b->url()});

  std::vector<std::string> chunks;
  auto collect = [&](std::string_view chunk) {
    chunks.emplace_back(chunk);
    return absl::OkStatus();
  };
  Status status = a->transport->FetchSnapshot(NodeId(2), Index(50), collect, 5000ms);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(asked_index.load(), 50u);
  ASSERT_EQ(chunks.size(), static_cast<size_t>(kChunks));
  for (int i = 0; i < kChunks; ++i) {
    EXPECT_EQ(chunks[i], i == 10 ? std::string(5 << 20, 'z') : "chunk" + std::to_string(i));
  }

  // The receiving side's error is returned as is and stops the stream.
  int calls = 0;
  status = a->transport->FetchSnapshot(
      NodeId(2), Index(50),
      [&](std::string_view) {
        ++calls;
        return absl::DataLossError("bad chunk");
      },
      5000ms);
  EXPECT_EQ(status, absl::DataLossError("bad chunk"));
  EXPECT_EQ(calls, 1);

  // The sending side's errors keep their code and name the member.
  status = a->transport->FetchSnapshot(NodeId(2), Index(500), collect, 5000ms);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("member 2"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("not applied that far yet"));
  chunks.clear();
  status = a->transport->FetchSnapshot(NodeId(2), Index(66), collect, 5000ms);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(chunks, ElementsAre("chunk0", "chunk1", "chunk2"));

  status = a->transport->FetchSnapshot(NodeId(9), Index(1), collect, 5000ms);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
}

TEST(TransportTest, LeaseCallsReachTheOtherMemberAndItsAnswerComesBackVerbatim) {
  auto b = StartMember(TestOptions(NodeId(2)), [](FakeNode& node) {
    node.renew = [](const etcdserverpb::LeaseKeepAliveRequest& request,
                    etcdserverpb::LeaseKeepAliveResponse* response) {
      if (request.id() == 404) {
        // etcd's clients match on this text; it must arrive unchanged.
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "etcdserver: requested lease not found");
      }
      if (request.id() == 408) std::this_thread::sleep_for(300ms);
      response->set_id(request.id());
      response->set_ttl(30);
      return grpc::Status::OK;
    };
    node.time_to_live = [](const etcdserverpb::LeaseTimeToLiveRequest& request,
                           etcdserverpb::LeaseTimeToLiveResponse* response) {
      response->set_id(request.id());
      response->set_ttl(12);
      response->set_grantedttl(60);
      if (request.keys()) response->add_keys("k");
      return grpc::Status::OK;
    };
  });
  auto a = StartMember(NodeId(1));
  a->transport->SetPeer(NodeId(2), {b->url()});

  etcdserverpb::LeaseKeepAliveRequest renew;
  renew.set_id(99);
  etcdserverpb::LeaseKeepAliveResponse renewed;
  ASSERT_TRUE(a->transport->LeaseRenew(NodeId(2), renew, &renewed, 5000ms).ok());
  EXPECT_EQ(renewed.id(), 99);
  EXPECT_EQ(renewed.ttl(), 30);

  etcdserverpb::LeaseTimeToLiveRequest ask;
  ask.set_id(5);
  ask.set_keys(true);
  etcdserverpb::LeaseTimeToLiveResponse answer;
  ASSERT_TRUE(a->transport->LeaseTimeToLive(NodeId(2), ask, &answer, 5000ms).ok());
  EXPECT_EQ(answer.id(), 5);
  EXPECT_EQ(answer.ttl(), 12);
  EXPECT_EQ(answer.grantedttl(), 60);
  EXPECT_THAT(answer.keys(), ElementsAre("k"));

  renew.set_id(404);
  grpc::Status status = a->transport->LeaseRenew(NodeId(2), renew, &renewed, 5000ms);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "etcdserver: requested lease not found");

  renew.set_id(408);
  status = a->transport->LeaseRenew(NodeId(2), renew, &renewed, 50ms);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  status = a->transport->LeaseRenew(NodeId(9), renew, &renewed, 5000ms);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(TransportTest, ChangingAPeersAddressMovesItsStream) {
  auto a = StartMember(NodeId(1));
  auto old_b = StartMember(NodeId(2));
  auto new_b = StartMember(NodeId(2));
  a->transport->SetPeer(NodeId(2), {old_b->url()});
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  ASSERT_EQ(old_b->node.WaitFor(1).size(), 1u);

  a->transport->SetPeer(NodeId(2), {new_b->url()});
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 2));
  const std::vector<Received> received = new_b->node.WaitFor(1);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].raft->read_round, 2u);
  EXPECT_EQ(old_b->node.count(), 1u);
}

TEST(TransportTest, SeveralUrlsAreTriedInTurn) {
  TransportOptions options = TestOptions(NodeId(1));
  options.handshake_timeout = 200ms;  // Each dead URL costs one handshake.
  auto a = StartMember(options);
  auto b = StartMember(NodeId(2));
  a->transport->SetPeer(NodeId(2), {UnusedUrl(), b->url()});
  ASSERT_TRUE(Eventually([&] { return a->transport->IsConnected(NodeId(2)); }));
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  EXPECT_EQ(b->node.WaitFor(1).size(), 1u);
}

TEST(TransportTest, UnknownAndRemovedPeersDropAndCount) {
  auto a = StartMember(NodeId(1));
  auto b = StartMember(NodeId(2));
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  a->transport->SendForward(NodeId(2), "request");
  EXPECT_EQ(a->transport->stats().dropped, 2u);
  EXPECT_FALSE(a->transport->IsConnected(NodeId(2)));

  a->transport->SetPeer(NodeId(2), {b->url()});
  ASSERT_TRUE(Eventually([&] { return a->transport->IsConnected(NodeId(2)); }));
  a->transport->RemovePeer(NodeId(2));
  EXPECT_FALSE(a->transport->IsConnected(NodeId(2)));
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  EXPECT_EQ(a->transport->stats().dropped, 3u);
  // The member itself is never a peer: passing the whole cluster to SetPeer is fine.
  a->transport->SetPeer(NodeId(1), {a->url()});
  a->transport->Send(Heartbeat(NodeId(2), NodeId(1), 1));
  EXPECT_EQ(a->transport->stats().dropped, 4u);
  EXPECT_EQ(b->node.count(), 0u);
}

// etcd's rafthttp answers a removed member 410 Gone, and the member stops. Here the refusal is
// FAILED_PRECONDITION with the same words, on an open stream (it is ended) and on every handshake
// after; the removed member is told once.
TEST(TransportTest, ARemovedMemberIsRefusedAndTold) {
  std::atomic<bool> one_removed = false;
  auto b = StartMember(TestOptions(NodeId(2)), [&](FakeNode& node) {
    node.is_removed = [&](NodeId id) { return id == NodeId(1) && one_removed.load(); };
  });
  std::atomic<int> told = 0;
  auto a = StartMember(TestOptions(NodeId(1)),
                       [&](FakeNode& node) { node.on_removed = [&] { ++told; }; });
  ASSERT_TRUE(a && b);
  a->transport->SetPeer(NodeId(2), {b->url()});
  a->transport->Send(Heartbeat(NodeId(1), NodeId(2), 1));
  ASSERT_EQ(b->node.WaitFor(1).size(), 1u);

  one_removed = true;
  const auto deadline = Clock::now() + kArrivalTimeout;
  for (uint64_t round = 2; told == 0 && Clock::now() < deadline; ++round) {
    a->transport->Send(Heartbeat(NodeId(1), NodeId(2), round));
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(told, 1);
  EXPECT_EQ(b->node.count(), 1u);
  for (uint64_t round = 100; round < 110; ++round) {
    a->transport->Send(Heartbeat(NodeId(1), NodeId(2), round));
  }
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(told, 1);
  EXPECT_EQ(b->node.count(), 1u);
}

// A member about to join knows neither id, so Members answers without the identity check;
// ChangeMembers is checked like every other call and brings the leader's answer back verbatim.
TEST(TransportTest, MembersNeedsNoIdentityAndChangeMembersComesBackVerbatim) {
  auto b = StartMember(TestOptions(NodeId(2)), [](FakeNode& node) {
    node.members = [](synodpb::MembersResponse* response) {
      response->set_cluster_id(kCluster);
      response->mutable_members()->add_members()->set_id(2);
      return grpc::Status::OK;
    };
    node.change_members = [](const synodpb::MemberChangeRequest& request,
                             synodpb::MemberChangeResponse* response) {
      if (request.member().id() == 9) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "etcdserver: member not found");
      }
      response->set_index(42);
      return grpc::Status::OK;
    };
  });
  ASSERT_TRUE(b);
  auto fetched = FetchClusterMembers({UnusedUrl(), b->url()}, 1s);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->cluster_id(), kCluster);
  EXPECT_EQ(fetched->members().members(0).id(), 2u);
  EXPECT_EQ(FetchClusterMembers({UnusedUrl()}, 200ms).status().code(),
            absl::StatusCode::kUnavailable);

  auto a = StartMember(NodeId(1));
  ASSERT_TRUE(a);
  a->transport->SetPeer(NodeId(2), {b->url()});
  synodpb::MemberChangeRequest request;
  request.mutable_member()->set_id(3);
  synodpb::MemberChangeResponse response;
  ASSERT_TRUE(a->transport->ChangeMembers(NodeId(2), request, &response, 2s).ok());
  EXPECT_EQ(response.index(), 42u);
  request.mutable_member()->set_id(9);
  const grpc::Status refused = a->transport->ChangeMembers(NodeId(2), request, &response, 2s);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(refused.error_message(), "etcdserver: member not found");

  // Another cluster's member may not ask for a change.
  TransportOptions other = TestOptions(NodeId(1));
  other.cluster_id = kCluster + 1;
  auto c = StartMember(other);
  ASSERT_TRUE(c);
  c->transport->SetPeer(NodeId(2), {b->url()});
  EXPECT_EQ(c->transport->ChangeMembers(NodeId(2), request, &response, 2s).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST(TransportTest, StopsPromptlyWhateverItsPeersDo) {
  SilentListener silent;
  auto b = StartMember(NodeId(4));
  auto a = StartMember(NodeId(1));
  a->transport->SetPeer(NodeId(2), {UnusedUrl()});   // Refuses connections.
  a->transport->SetPeer(NodeId(3), {silent.url()});  // Accepts and never answers.
  a->transport->SetPeer(NodeId(4), {b->url()});
  b->node.CloseGate();  // Takes one message and stops reading.
  for (int i = 0; i < 100; ++i) {
    for (uint64_t peer = 2; peer <= 4; ++peer) {
      raft::Message message = Heartbeat(NodeId(1), NodeId(peer), 1);
      message.read_context = std::string(64 << 10, 'x');
      a->transport->Send(std::move(message));
    }
  }
  ASSERT_EQ(b->node.WaitFor(1).size(), 1u);
  std::this_thread::sleep_for(300ms);  // Every sender is now blocked or backing off.
  EXPECT_FALSE(a->transport->IsConnected(NodeId(2)));
  EXPECT_FALSE(a->transport->IsConnected(NodeId(3)));

  auto start = Clock::now();
  a->transport->RemovePeer(NodeId(3));
  EXPECT_LT(Clock::now() - start, 500ms);
  start = Clock::now();
  a.reset();
  EXPECT_LT(Clock::now() - start, 1s);
  b->node.OpenGate();
}

}  // namespace
}  // namespace synod::server
