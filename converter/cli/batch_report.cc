#include "converter/cli/batch_report.h"

#include <cstdio>
#include <set>

#include "converter/cli/messages.h"

namespace safemodel::cli {

const std::vector<std::string>& BatchStatuses() {
  static const std::vector<std::string> kStatuses = {"converted", "refused", "malformed", "unsupported",
                                                     "limit",     "sandbox", "io_error",  "invalid",
                                                     "symlink"};
  return kStatuses;
}

void BatchTally::Add(const std::string& status, uint64_t bytes, bool skipped) {
  ++done_;
  bytes_ += bytes;
  auto& [n, b] = per_status_[status];
  ++n;
  b += bytes;
  if (skipped) {
    ++skipped_;
  } else {
    ++converted_now_;
    converted_bytes_now_ += bytes;
  }
}

size_t BatchTally::Count(const std::string& status) const {
  auto it = per_status_.find(status);
  return it == per_status_.end() ? 0 : it->second.first;
}

namespace {

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

std::string BatchTally::LiveLine() const {
  const double s = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string line = "safe-convert batch: " + std::to_string(done_) + "/" + std::to_string(total_) +
                     " files, " + HumanBytes(bytes_) + " of " + HumanBytes(total_bytes_);
  if (s > 0 && converted_now_ > 0) {
    const double files_rate = static_cast<double>(converted_now_) / s;
    const double byte_rate = static_cast<double>(converted_bytes_now_) / s;
    line += ", " + Fixed(files_rate, 1) + " files/s, " + HumanBytes(static_cast<uint64_t>(byte_rate)) + "/s";
    const size_t left = total_ - done_;
    if (left > 0) line += ", " + Fixed(static_cast<double>(left) / files_rate, 0) + " s left";
  }
  std::string counts;
  for (const std::string& st : BatchStatuses()) {
    if (size_t n = Count(st); n > 0) counts += (counts.empty() ? "" : ", ") + st + " " + std::to_string(n);
  }
  return counts.empty() ? line : line + "; " + counts;
}

std::string BatchTally::Summary() const {
  const double s = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string out = "safe-convert batch: " + std::to_string(done_) + " of " + std::to_string(total_) +
                    " inputs done";
  if (skipped_ > 0) out += " (" + std::to_string(skipped_) + " by an earlier run)";
  out += "\n";
  char row[160];
  std::snprintf(row, sizeof row, "  %-12s %8s %12s\n", "status", "files", "bytes");
  out += row;
  for (const std::string& st : BatchStatuses()) {
    auto it = per_status_.find(st);
    if (it == per_status_.end()) continue;
    std::snprintf(row, sizeof row, "  %-12s %8zu %12s\n", st.c_str(), it->second.first,
                  HumanBytes(it->second.second).c_str());
    out += row;
  }
  std::snprintf(row, sizeof row, "  %-12s %8zu %12s\n", "total", done_, HumanBytes(bytes_).c_str());
  out += row;
  out += "  this run: " + std::to_string(converted_now_) + " inputs in " + Fixed(s, 1) + " s";
  if (s > 0 && converted_now_ > 0) {
    out += ", " + Fixed(static_cast<double>(converted_now_) / s, 1) + " files/s, " +
           HumanBytes(static_cast<uint64_t>(static_cast<double>(converted_bytes_now_) / s)) + "/s";
  }
  return out + "\n";
}

std::string PathToUri(const std::string& path) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : path) {
    const auto c = static_cast<unsigned char>(ch);
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
    if (keep) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return path.size() > 0 && path[0] == '/' ? "file://" + out : out;
}

namespace {

const char* SarifLevel(const std::string& severity) {
  if (severity == "refused") return "error";
  if (severity == "dropped") return "warning";
  return "note";
}

nlohmann::ordered_json SarifResult(const std::string& rule, const char* level, const std::string& text,
                                   const std::string& uri, const std::string& where) {
  nlohmann::ordered_json loc = {{"physicalLocation", {{"artifactLocation", {{"uri", uri}}}}}};
  if (!where.empty()) loc["logicalLocations"] = nlohmann::ordered_json::array({{{"name", where}}});
  return {{"ruleId", rule},
          {"level", level},
          {"message", {{"text", text}}},
          {"locations", nlohmann::ordered_json::array({loc})}};
}

}  // namespace

std::string SarifLog(const std::vector<nlohmann::json>& results, const std::string& version) {
  nlohmann::ordered_json out_results = nlohmann::ordered_json::array();
  std::set<std::string> rules;
  for (const nlohmann::json& r : results) {
    const std::string status = r.value("status", "");
    const std::string path = r.contains("input") ? r["input"].value("path", "") : "";
    const std::string uri = PathToUri(path);
    size_t emitted = 0;
    if (r.contains("findings") && r["findings"].is_array()) {
      for (const nlohmann::json& f : r["findings"]) {
        const std::string rule = f.value("rule", "unknown");
        const std::string severity = f.value("severity", "note");
        rules.insert(rule);
        out_results.push_back(SarifResult(rule, SarifLevel(severity), f.value("message", ""), uri,
                                          f.value("location", "")));
        if (severity != "note") ++emitted;
      }
    }
    if (status != "converted" && emitted == 0) {
      const std::string rule = "status." + status;
      rules.insert(rule);
      out_results.push_back(SarifResult(rule, "error", status + ": " + r.value("message", ""), uri, ""));
    }
  }
  nlohmann::ordered_json rule_list = nlohmann::ordered_json::array();
  for (const std::string& rule : rules) {
    rule_list.push_back({{"id", rule}, {"shortDescription", {{"text", rule}}}});
  }
  nlohmann::ordered_json driver = {{"name", "safe-convert"},
                                   {"version", version},
                                   {"rules", rule_list}};
  nlohmann::ordered_json log = {
      {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
      {"version", "2.1.0"},
      {"runs", nlohmann::ordered_json::array({{{"tool", {{"driver", driver}}}, {"results", out_results}}})}};
  return log.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace safemodel::cli
