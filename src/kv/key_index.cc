#include "kv/key_index.h"

#include "base/assert.h"

namespace synod::kv {

namespace {
// Debian's Abseil has its own string_view type, which the map's hasher takes.
absl::string_view AbslView(std::string_view key) {
  return absl::string_view(key.data(), key.size());
}
}  // namespace

const KeyIndex::Newest* KeyIndex::Find(std::string_view key) const {
  auto it = newest_.find(AbslView(key));
  return it == newest_.end() ? nullptr : &it->second;
}

void KeyIndex::Set(std::string_view key, const Newest& newest) {
  auto [it, inserted] = newest_.try_emplace(AbslView(key), newest);
  if (inserted) {
    undo_.emplace_back(std::string(key), std::nullopt);
  } else {
    undo_.emplace_back(std::string(key), it->second);
    it->second = newest;
  }
}

void KeyIndex::Erase(std::string_view key) {
  auto it = newest_.find(AbslView(key));
  if (it == newest_.end()) return;
  undo_.emplace_back(std::string(key), it->second);
  newest_.erase(it);
}

void KeyIndex::RollbackTo(size_t mark) {
  SYNOD_ASSERT(mark <= undo_.size());
  while (undo_.size() > mark) {
    auto& [key, previous] = undo_.back();
    if (previous.has_value()) {
      newest_.insert_or_assign(key, *previous);
    } else {
      newest_.erase(key);
    }
    undo_.pop_back();
  }
}

void KeyIndex::Clear() {
  newest_.clear();
  undo_.clear();
}

void KeyIndex::Load(std::string key, const Newest& newest) {
  SYNOD_ASSERT(undo_.empty());
  newest_.insert_or_assign(std::move(key), newest);
}

}  // namespace synod::kv
