// ConvertReport::ToJson: the machine-readable report (README "Report format").
#include <nlohmann/json.hpp>

#include "proto/json_util.h"
#include "safemodel/convert.h"

namespace safemodel {

std::string ConvertReport::ToJson() const {
  nlohmann::ordered_json j;
  j["schema_version"] = kReportSchemaVersion;
  j["status"] = std::string(StatusCodeName(status.code()));
  j["exit_code"] = ExitCodeFor(status.code());
  j["message"] = status.message();
  j["input"] = {{"path", input_path}, {"bytes", input_bytes}, {"sha256", input_sha256},
                {"format", source_format}};
  j["output"] = {{"path", status.ok() ? output_path : ""},
                 {"bytes", output_bytes},
                 {"tensors", tensor_count},
                 {"tensor_bytes", tensor_bytes}};
  j["findings"] = FindingsToJson(findings);
  nlohmann::ordered_json w = {{"outcome", WorkerOutcomeName(worker.kind)},
                              {"program", worker.program},
                              {"hand_off", worker.hand_off},
                              {"name_hint", worker.name_hint},
                              {"exit_code", worker.exit_code},
                              {"signal", worker.signal},
                              {"max_rss_bytes", worker.max_rss_bytes},
                              {"max_rss_source", worker.max_rss_source},
                              {"cpu_seconds", worker.cpu_seconds},
                              {"isolation", worker.isolation},
                              {"claimed_isolation", worker.claimed_isolation}};
  nlohmann::ordered_json observed = nlohmann::ordered_json::object();
  for (const auto& [key, value] : worker.observed) observed[key] = value;
  w["observed"] = std::move(observed);
  if (worker.syscall_nr >= 0) {
    w["syscall"] = {{"number", worker.syscall_nr}, {"name", worker.syscall_name}};
  }
  j["worker"] = std::move(w);
  j["options"] = options;
  j["converter"] = ConverterVersion();
  j["wall_seconds"] = wall_seconds;
  j["parent_max_rss_bytes"] = parent_max_rss_bytes;
  // Replace invalid UTF-8 (e.g. from a path) rather than fail to report.
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace safemodel
