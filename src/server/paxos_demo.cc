// `synod paxos`: flags, identity, and the wire and disk codecs (paxos_demo.h). The process
// itself, its event loop and its peers, is in paxos_demo_process.cc.

#include "server/paxos_demo.h"

#include <absl/strings/str_split.h>
#include <absl/time/time.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstring>
#include <set>

#include "base/assert.h"
#include "consensus/paxos/paxos.h"
#include "storage/codec.h"
#include "storage/crc32c.h"

namespace synod::server {
namespace {

// A duration flag in Go's syntax ("30s", "250ms"), which absl::ParseDuration shares.
Status ParseDurationFlag(std::string_view flag, const std::string& text,
                         std::chrono::milliseconds& out) {
  absl::Duration duration;
  if (!absl::ParseDuration(text, &duration) || duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(fmt::format(
        "invalid value {:?} for flag --{}: want a positive duration such as 30s", text, flag));
  }
  out = absl::ToChronoMilliseconds(duration);
  if (out.count() == 0) {
    return absl::InvalidArgumentError(fmt::format("--{} {:?} is under a millisecond", flag, text));
  }
  return absl::OkStatus();
}

bool IsNameCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

// "n1=127.0.0.1:7001,n2=127.0.0.1:7002": distinct names and addresses, sorted by name.
Result<std::vector<PaxosDemoPeer>> ParsePeers(const std::string& text) {
  std::vector<PaxosDemoPeer> peers;
  std::set<std::string> addresses;
  for (absl::string_view absl_item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const std::string_view item(absl_item.data(), absl_item.size());
    const size_t equals = item.find('=');
    if (equals == std::string_view::npos) {
      return absl::InvalidArgumentError(fmt::format("--peers: {:?} is not name=host:port", item));
    }
    PaxosDemoPeer peer{std::string(item.substr(0, equals)), std::string(item.substr(equals + 1))};
    if (peer.name.empty() || !std::all_of(peer.name.begin(), peer.name.end(), IsNameCharacter)) {
      return absl::InvalidArgumentError(fmt::format(
          "--peers: invalid member name {:?} (letters, digits, '-', '_', '.')", peer.name));
    }
    const size_t colon = peer.address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == peer.address.size()) {
      return absl::InvalidArgumentError(
          fmt::format("--peers: {:?} of {} is not host:port", peer.address, peer.name));
    }
    if (!addresses.insert(peer.address).second) {
      return absl::InvalidArgumentError(
          fmt::format("--peers: address {} is given twice", peer.address));
    }
    peers.push_back(std::move(peer));
  }
  std::sort(peers.begin(), peers.end(),
            [](const PaxosDemoPeer& a, const PaxosDemoPeer& b) { return a.name < b.name; });
  for (size_t i = 1; i < peers.size(); ++i) {
    if (peers[i].name == peers[i - 1].name) {
      return absl::InvalidArgumentError(
          fmt::format("--peers: member {} is given twice", peers[i].name));
    }
  }
  if (peers.empty()) return absl::InvalidArgumentError("--peers: no members");
  if (peers.size() > paxos::kMembersMax) {
    return absl::InvalidArgumentError(
        fmt::format("--peers: {} members, at most {}", peers.size(), paxos::kMembersMax));
  }
  return peers;
}

synodpb::PaxosNumber EncodeNumber(const paxos::ProposalNumber& number) {
  synodpb::PaxosNumber encoded;
  encoded.set_round(number.round.value());
  encoded.set_proposer(number.proposer.value());
  return encoded;
}

paxos::ProposalNumber DecodeNumber(const synodpb::PaxosNumber& encoded) {
  return paxos::ProposalNumber{Ballot(encoded.round()), NodeId(encoded.proposer())};
}

synodpb::PaxosProposal EncodeProposal(const paxos::Proposal& proposal) {
  synodpb::PaxosProposal encoded;
  *encoded.mutable_number() = EncodeNumber(proposal.number);
  encoded.set_value(proposal.value);
  return encoded;
}

paxos::Proposal DecodeProposal(const synodpb::PaxosProposal& encoded) {
  return paxos::Proposal{DecodeNumber(encoded.number()), encoded.value()};
}

}  // namespace

Result<PaxosDemoOptions> ParsePaxosDemoFlags(int argc, const char* const* argv) {
  std::vector<std::string> arguments(argv, argv + argc);
  std::reverse(arguments.begin(), arguments.end());  // CLI11's vector form expects this order.

  PaxosDemoOptions options;
  std::string peers;
  std::string propose;
  std::string timeout = "30s";
  std::string linger = "10s";
  std::string tick = "20ms";
  uint64_t seed = 0;
  bool help = false;
  CLI::App app{
      "synod paxos: decide one value among processes with single-decree Paxos; prints "
      "\"chosen: VALUE\" (exit 0) or \"not yet decided\" (exit 3)",
      "synod paxos"};
  app.set_help_flag();
  app.add_flag("--help,-h", help, "print this help and exit");
  app.add_option("--name", options.name, "this member's name in --peers");
  app.add_option("--data-dir", options.data_dir, "where this member keeps its acceptor state")
      ->required();
  app.add_option("--peers", peers, "every member, this one included: name=host:port,...");
  CLI::Option* propose_option =
      app.add_option("--propose", propose, "the value this member proposes");
  CLI::Option* query_option = app.add_flag(
      "--query", options.query, "print what the data dir has learned, without any network");
  app.add_option("--timeout", timeout, "give up undecided after this long (a Go duration)");
  app.add_option("--linger", linger,
                 "after deciding, serve undecided peers at most this long before exiting");
  app.add_option("--tick", tick, "the core's tick; its phase timeout is 10 ticks");
  CLI::Option* seed_option =
      app.add_option("--seed", seed, "seed of the retry backoff (default: random)");
  app.add_option("--log-level", options.log_level, "debug, info, warn, error or critical");
  propose_option->excludes(query_option);
  try {
    app.parse(arguments);
  } catch (const CLI::ParseError& error) {
    if (help) {
      options.print_and_exit = app.help();
      return options;
    }
    return absl::InvalidArgumentError(error.what());
  }
  if (help) {
    options.print_and_exit = app.help();
    return options;
  }
  if (*propose_option) options.propose = propose;
  if (*seed_option) options.seed = seed;
  for (auto [flag, text, out] :
       {std::tuple{"timeout", &timeout, &options.timeout},
        std::tuple{"linger", &linger, &options.linger}, std::tuple{"tick", &tick, &options.tick}}) {
    if (Status status = ParseDurationFlag(flag, *text, *out); !status.ok()) return status;
  }
  if (options.query) return options;  // The data dir alone answers.

  if (options.name.empty()) return absl::InvalidArgumentError("--name is required");
  auto parsed_peers = ParsePeers(peers);
  if (!parsed_peers.ok()) return parsed_peers.status();
  options.peers = std::move(*parsed_peers);
  if (PaxosDemoNodeId(options.peers, options.name) == kNoNode) {
    return absl::InvalidArgumentError(
        fmt::format("--name {} is not one of the members in --peers", options.name));
  }
  return options;
}

uint64_t PaxosDemoGroupId(const std::vector<PaxosDemoPeer>& peers) {
  std::vector<std::string> members;
  for (const PaxosDemoPeer& peer : peers) members.push_back(peer.name + "=" + peer.address);
  std::sort(members.begin(), members.end());
  // FNV-1a, 64 bits: stable across builds and machines, unlike std::hash.
  uint64_t hash = 0xcbf29ce484222325;
  for (char c : fmt::format("{}", fmt::join(members, ","))) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3;
  }
  return hash;
}

NodeId PaxosDemoNodeId(const std::vector<PaxosDemoPeer>& peers, std::string_view name) {
  std::vector<std::string_view> names;
  for (const PaxosDemoPeer& peer : peers) names.push_back(peer.name);
  std::sort(names.begin(), names.end());
  auto found = std::lower_bound(names.begin(), names.end(), name);
  if (found == names.end() || *found != name) return kNoNode;
  return NodeId(static_cast<uint64_t>(found - names.begin()) + 1);
}

synodpb::PaxosMessage EncodePaxosMessage(const paxos::Message& message, uint64_t group_id) {
  synodpb::PaxosMessage encoded;
  encoded.set_group_id(group_id);
  encoded.set_type(static_cast<uint32_t>(message.type));
  encoded.set_from(message.from.value());
  encoded.set_to(message.to.value());
  *encoded.mutable_number() = EncodeNumber(message.number);
  *encoded.mutable_promised() = EncodeNumber(message.promised);
  if (message.accepted.has_value()) *encoded.mutable_accepted() = EncodeProposal(*message.accepted);
  encoded.set_value(message.value);
  return encoded;
}

Result<paxos::Message> DecodePaxosMessage(const synodpb::PaxosMessage& encoded) {
  if (encoded.type() > static_cast<uint32_t>(paxos::MessageType::kLearn)) {
    return absl::InvalidArgumentError(fmt::format("unknown Paxos message type {}", encoded.type()));
  }
  paxos::Message message;
  message.type = static_cast<paxos::MessageType>(encoded.type());
  message.from = NodeId(encoded.from());
  message.to = NodeId(encoded.to());
  message.number = DecodeNumber(encoded.number());
  message.promised = DecodeNumber(encoded.promised());
  if (encoded.has_accepted()) message.accepted = DecodeProposal(encoded.accepted());
  message.value = encoded.value();
  return message;
}

Status SavePaxosDemoState(storage::FileSystem& fs, const std::string& data_dir,
                          const PaxosDemoStateFile& file) {
  synodpb::PaxosDemoState encoded;
  encoded.set_group_id(file.group_id);
  encoded.set_name(file.name);
  *encoded.mutable_promised() = EncodeNumber(file.state.promised);
  if (file.state.accepted.has_value()) {
    *encoded.mutable_accepted() = EncodeProposal(*file.state.accepted);
  }
  encoded.set_decided(file.state.decided.has_value());
  if (file.state.decided.has_value()) encoded.set_decided_value(*file.state.decided);
  const std::string payload = encoded.SerializeAsString();
  std::string contents;
  storage::Encoder(&contents).PutU32(storage::ComputeCrc32c(payload));
  contents += payload;
  return storage::ReplaceFileDurably(fs, data_dir, kPaxosDemoStateFile, contents);
}

Result<std::optional<PaxosDemoStateFile>> LoadPaxosDemoState(storage::FileSystem& fs,
                                                             const std::string& data_dir) {
  const std::string path = storage::JoinPath(data_dir, kPaxosDemoStateFile);
  if (!fs.Exists(path)) return std::nullopt;
  auto contents = fs.ReadFile(path);
  if (!contents.ok()) return contents.status();
  if (contents->size() < sizeof(uint32_t)) {
    return absl::DataLossError(fmt::format("{}: {} bytes, too short", path, contents->size()));
  }
  const std::string_view payload = std::string_view(*contents).substr(sizeof(uint32_t));
  if (storage::ComputeCrc32c(payload) != storage::LoadU32(contents->data())) {
    return absl::DataLossError(fmt::format("{}: checksum mismatch", path));
  }
  synodpb::PaxosDemoState encoded;
  if (!encoded.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError(fmt::format("{}: does not parse", path));
  }
  PaxosDemoStateFile file;
  file.group_id = encoded.group_id();
  file.name = encoded.name();
  file.state.promised = DecodeNumber(encoded.promised());
  if (encoded.has_accepted()) file.state.accepted = DecodeProposal(encoded.accepted());
  if (encoded.decided()) file.state.decided = encoded.decided_value();
  return file;
}

}  // namespace synod::server
