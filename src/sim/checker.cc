#include "sim/checker.h"

#include <fmt/format.h>

#include <charconv>
#include <functional>
#include <string_view>

#include "base/assert.h"

namespace synod::sim {
namespace {

// A 64-bit mixer (the finalizer of SplitMix64): deterministic, well spread, and the same on
// every platform, unlike absl::Hash which is salted per process.
uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t HashBytes(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) hash = (hash ^ c) * 0x100000001b3ULL;
  return hash;
}

std::string Describe(const EntryDigest& digest) {
  const char* type = digest.type == raft::EntryType::kNormal  ? "normal"
                     : digest.type == raft::EntryType::kEmpty ? "empty"
                                                              : "config";
  return fmt::format("term {} {} #{:016x}", digest.term, type, digest.content_hash);
}

}  // namespace

EntryDigest DigestOf(const raft::Entry& entry) {
  uint64_t content = HashBytes(entry.data);
  if (entry.type == raft::EntryType::kConfig) {
    for (NodeId voter : entry.membership.voters) content = Mix(content, voter.value());
    content = Mix(content, 0xffff);
    for (NodeId learner : entry.membership.learners) content = Mix(content, learner.value());
  }
  return EntryDigest{entry.term, entry.type, content};
}

uint64_t NextStateHash(uint64_t state_hash, const raft::Entry& entry) {
  const EntryDigest digest = DigestOf(entry);
  return Mix(Mix(state_hash, entry.index.value()),
             Mix(static_cast<uint64_t>(digest.type), digest.content_hash));
}

std::string EncodeProposal(uint64_t proposal_id) {
  return fmt::format("p{}", proposal_id);
}

std::optional<uint64_t> DecodeProposal(const std::string& data) {
  if (data.size() < 2 || data[0] != 'p') return std::nullopt;
  uint64_t id = 0;
  auto [end, error] = std::from_chars(data.data() + 1, data.data() + data.size(), id);
  if (error != std::errc() || end != data.data() + data.size()) return std::nullopt;
  return id;
}

void Checker::Fail(std::string message) {
  if (!failure_.has_value()) failure_ = std::move(message);
}

void Checker::OnProposalIssued(uint64_t proposal_id) {
  SYNOD_ASSERT(proposal_id == proposals_issued_ + 1);
  proposals_issued_ = proposal_id;
}

void Checker::ObserveNode(const raft::Raft& node) {
  NodeView& view = nodes_[node.id()];
  const bool is_leader = node.role() == raft::Role::kLeader;
  if (is_leader) {
    // Election Safety (figure 3): "at most one leader can be elected in a given term".
    auto [it, inserted] = leader_of_term_.emplace(node.term(), node.id());
    if (!inserted && it->second != node.id()) {
      Fail(fmt::format("Election Safety: nodes {} and {} were both leader in term {}", it->second,
                       node.id(), node.term()));
      return;
    }
    const bool same_leadership = view.was_leader && view.leader_term == node.term();
    if (same_leadership) {
      // Leader Append-Only (figure 3): "a leader never overwrites or deletes entries in its log;
      // it only appends". Any rewrite of an earlier entry also replaces the last one, so
      // comparing the entry at the previous last index suffices.
      const raft::RaftLog& log = node.log();
      const Index last = view.leader_last_index;
      bool intact = log.last_index() >= last;
      if (intact && last >= log.first_index()) {
        intact = DigestOf(log.At(last)) == view.leader_last_digest;
      } else if (intact && last == log.prev_index()) {
        intact = log.TermAt(last) == view.leader_last_digest.term;
      }
      if (!intact) {
        Fail(fmt::format("Leader Append-Only: leader {} of term {} lost or rewrote entry {} ({})",
                         node.id(), node.term(), last, Describe(view.leader_last_digest)));
        return;
      }
    } else {
      CheckLeaderCompleteness(node);
      if (failed()) return;
    }
    view.leader_term = node.term();
    view.leader_last_index = node.log().last_index();
    const Index last = node.log().last_index();
    view.leader_last_digest = last >= node.log().first_index()
                                  ? DigestOf(node.log().At(last))
                                  : EntryDigest{*node.log().TermAt(last), {}, 0};
  }
  view.was_leader = is_leader;
  RecordCommitted(node, view);
}

void Checker::ForgetVolatile(NodeId node) {
  NodeView& view = nodes_[node];
  view.was_leader = false;
  view.commit = Index(0);
}

void Checker::CheckLeaderCompleteness(const raft::Raft& node) {
  // Leader Completeness (figure 3): "if a log entry is committed in a given term, then that
  // entry will be present in the logs of the leaders for all higher-numbered terms".
  const raft::RaftLog& log = node.log();
  for (uint64_t i = 1; i <= committed_.size(); ++i) {
    const CommittedEntry& committed = committed_[i - 1];
    if (committed.commit_term >= node.term()) continue;
    const Index index(i);
    bool present;
    if (index > log.last_index()) {
      present = false;
    } else if (index >= log.first_index()) {
      present = DigestOf(log.At(index)) == committed.digest;
    } else if (index == log.prev_index()) {
      present = log.TermAt(index) == committed.digest.term;
    } else {
      // Covered by the leader's snapshot: every entry up to it matches if the snapshot's own
      // entry does (checked when i reaches prev_index).
      present = true;
    }
    if (!present) {
      Fail(fmt::format(
          "Leader Completeness: node {} became leader of term {} without entry {} ({}) "
          "committed in term {}",
          node.id(), node.term(), index, Describe(committed.digest), committed.commit_term));
      return;
    }
  }
}

void Checker::RecordCommitted(const raft::Raft& node, NodeView& view) {
  const raft::RaftLog& log = node.log();
  const Index commit = log.committed();
  if (commit < view.commit) {
    // A restarted node may know less; anything else is a regression of the commit index.
    Fail(fmt::format("commit index of node {} went back from {} to {}", node.id(), view.commit,
                     commit));
    return;
  }
  // Entries between the node's previous commit and its new one are newly committed by its
  // knowledge; those at or below the compaction point came from a snapshot and were committed
  // (and recorded) when its creator committed them.
  Index from = std::max(view.commit, log.prev_index()).next();
  for (Index index = from; index <= commit; index = index.next()) {
    const EntryDigest digest = DigestOf(log.At(index));
    if (index.value() <= committed_.size()) {
      const CommittedEntry& known = committed_[index.value() - 1];
      if (!(known.digest == digest)) {
        Fail(fmt::format(
            "State Machine Safety: node {} committed {} at index {} but {} was committed there",
            node.id(), Describe(digest), index, Describe(known.digest)));
        return;
      }
    } else {
      if (index.value() != committed_.size() + 1) {
        Fail(fmt::format("checker: node {} committed index {} before index {} was seen committed",
                         node.id(), index, committed_.size() + 1));
        return;
      }
      committed_.push_back(CommittedEntry{digest, node.term()});
      state_hashes_.emplace_back();
    }
  }
  view.commit = commit;
}

uint64_t Checker::ChainAt(const NodeView& view, Index index) const {
  SYNOD_ASSERT(index >= view.chain_base);
  SYNOD_ASSERT(index.distance_from(view.chain_base) < view.chain.size());
  return view.chain[index.distance_from(view.chain_base)];
}

void Checker::OnPersist(const raft::Raft& node, const raft::Ready& ready,
                        Index durable_last_before) {
  OnPersist(node.id(), node.role() == raft::Role::kLeader, node.term(), ready,
            durable_last_before);
}

void Checker::OnPersist(NodeId node_id, bool was_leader, Term term, const raft::Ready& ready,
                        Index durable_last_before) {
  NodeView& view = nodes_[node_id];
  if (view.chain.empty()) {
    // First sight of this node's durable log: it starts empty at index 0.
    view.chain_base = Index(0);
    view.chain.push_back(0);
    view.terms.push_back(Term(0));
  }
  if (ready.snapshot.has_value()) {
    const raft::SnapshotMeta& meta = ready.snapshot->meta;
    auto it = chain_at_.find({meta.index.value(), meta.term.value()});
    if (it == chain_at_.end()) {
      Fail(
          fmt::format("Log Matching: node {} installed a snapshot at ({}, term {}) that no "
                      "durable log ever held",
                      node_id, meta.index, meta.term));
      return;
    }
    view.chain_base = meta.index;
    view.chain.assign(1, it->second);
    view.terms.assign(1, meta.term);
    durable_last_before = meta.index;
  }
  if (ready.entries.empty()) return;
  const Index first = ready.entries.front().index;
  SYNOD_ASSERT_MSG(first > view.chain_base, "node {} persisted entry {} below its base {}",
                   node_id, first, view.chain_base);
  SYNOD_ASSERT(first <= durable_last_before.next());
  // Leader Append-Only on durable state: entries of a term are created only by that term's
  // leader, so a leader replacing a durable entry of its own term rewrote its own log.
  if (was_leader) {
    for (Index index = first; index <= durable_last_before; index = index.next()) {
      if (view.terms[index.distance_from(view.chain_base)] == term) {
        Fail(fmt::format("Leader Append-Only: leader {} of term {} overwrote its durable entry {}",
                         node_id, term, index));
        return;
      }
    }
  }
  view.chain.resize(first.distance_from(view.chain_base));
  view.terms.resize(view.chain.size());
  uint64_t chain = ChainAt(view, first.prev());
  for (const raft::Entry& entry : ready.entries) {
    const EntryDigest digest = DigestOf(entry);
    chain = Mix(Mix(chain, entry.term.value()),
                Mix(static_cast<uint64_t>(digest.type), digest.content_hash));
    view.chain.push_back(chain);
    view.terms.push_back(entry.term);
    // Log Matching (figure 3): "if two logs contain an entry with the same index and term, then
    // the logs are identical in all entries up through the given index". Equal chain hashes
    // at (index, term) say exactly that.
    auto [it, inserted] =
        chain_at_.emplace(std::pair{entry.index.value(), entry.term.value()}, chain);
    if (!inserted && it->second != chain) {
      Fail(
          fmt::format("Log Matching: node {} holds entry ({}, term {}) but its log up to there "
                      "differs from another node's with the same entry",
                      node_id, entry.index, entry.term));
      return;
    }
  }
}

void Checker::OnRestore(NodeId node, const raft::SnapshotMeta& meta, uint64_t state_hash) {
  NodeView& view = nodes_[node];
  if (meta.index > Index(0)) {
    SYNOD_ASSERT(meta.index.value() <= state_hashes_.size());
    std::optional<uint64_t>& known = state_hashes_[meta.index.value() - 1];
    if (known.has_value() && *known != state_hash) {
      Fail(
          fmt::format("State Machine Safety: node {} restored a snapshot at {} whose state "
                      "differs from the state other nodes reached there",
                      node, meta.index));
      return;
    }
    known = state_hash;
  }
  view.applied = meta.index;
}

void Checker::OnApply(NodeId node, const raft::Entry& entry, uint64_t state_hash) {
  NodeView& view = nodes_[node];
  if (entry.index != view.applied.next()) {
    Fail(fmt::format("node {} applied index {} after {}", node, entry.index, view.applied));
    return;
  }
  view.applied = entry.index;
  if (entry.index.value() > committed_.size()) {
    Fail(fmt::format("node {} applied index {} that was never seen committed", node, entry.index));
    return;
  }
  // State Machine Safety (figure 3): "if a server has applied a log entry at a given index to
  // its state machine, no other server will ever apply a different log entry for the same index".
  const EntryDigest digest = DigestOf(entry);
  const CommittedEntry& committed = committed_[entry.index.value() - 1];
  if (!(committed.digest == digest)) {
    Fail(
        fmt::format("State Machine Safety: node {} applied {} at index {} but {} is committed "
                    "there",
                    node, Describe(digest), entry.index, Describe(committed.digest)));
    return;
  }
  std::optional<uint64_t>& known = state_hashes_[entry.index.value() - 1];
  if (known.has_value() && *known != state_hash) {
    Fail(fmt::format("State Machine Safety: node {} reached a different state at index {}", node,
                     entry.index));
    return;
  }
  const bool first_application = !known.has_value();
  known = state_hash;
  if (entry.type != raft::EntryType::kNormal || !first_application) return;
  // Validity: only a value some client proposed is decided. Integrity: at most once.
  std::optional<uint64_t> proposal = DecodeProposal(entry.data);
  if (!proposal.has_value() || *proposal == 0 || *proposal > proposals_issued_) {
    Fail(fmt::format("Validity: index {} holds \"{}\", which no client proposed", entry.index,
                     entry.data));
    return;
  }
  auto [it, inserted] = applied_proposals_.emplace(*proposal, entry.index);
  if (!inserted) {
    Fail(fmt::format("Integrity: proposal {} was applied at index {} and again at index {}",
                     *proposal, it->second, entry.index));
  }
}

void Checker::OnReadRequested(const std::string& context) {
  reads_.emplace(context, committed_max());
}

void Checker::OnReadReleased(NodeId node, const raft::ReadState& read) {
  auto it = reads_.find(read.context);
  if (it == reads_.end()) {
    // The network may duplicate a forwarded read's answer; only the first release counts.
    if (!released_reads_.contains(read.context)) {
      Fail(fmt::format("node {} released read {} that nobody requested", node, read.context));
    }
    return;
  }
  // Linearizability of ReadIndex (thesis 6.4): a read must observe every write committed before
  // it began, so its read index is at least the commit index known anywhere at that moment.
  if (read.index < it->second) {
    Fail(
        fmt::format("Stale read: node {} released read {} at index {} but index {} was already "
                    "committed when it was requested",
                    node, read.context, read.index, it->second));
    return;
  }
  reads_.erase(it);
  released_reads_.insert(read.context);
}

}  // namespace synod::sim
