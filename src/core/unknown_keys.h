#pragma once
// A key a file reader does not know is most often a typo ("moed", "bandwith_mbps") that would
// leave its default in place without a word: plan and cluster files refuse it, naming it and
// the keys that are known. Header-only, so that core does not depend on a JSON library: `Json`
// is nlohmann::json.
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace chorus {

template <class Json>
void refuse_unknown_keys(const Json& object, std::initializer_list<const char*> known, const std::string& where,
                         const char* what) {
  if (!object.is_object()) return;
  for (const auto& item : object.items()) {
    bool found = false;
    for (const char* k : known) found = found || item.key() == k;
    if (found) continue;
    std::string names;
    for (const char* k : known) names += (names.empty() ? "" : ", ") + std::string(k);
    fail(where, "unknown key '", item.key(), "' (", what, " has ", names, ")");
  }
}

}  // namespace chorus
