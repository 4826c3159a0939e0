// The lines safe-convert prints for a person. One form for every line about
// a file, on standard error:
//   safe-convert: FILE: what happened (rule)
// Text that did not come from this program (paths, findings, messages:
// whoever made the model or named the file chose them) is escaped with
// EscapeForDisplay; status codes are printed in words, never as their
// internal names.
#ifndef SAFEMODEL_CONVERTER_CLI_MESSAGES_H_
#define SAFEMODEL_CONVERTER_CLI_MESSAGES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "proto/base/text.h"  // Count, HumanBytes
#include "safemodel/finding.h"
#include "safemodel/status.h"

namespace safemodel::cli {

// EscapeForDisplay, short.
std::string E(std::string_view text);

// "safe-convert: FILE: WHAT\n" (FILE escaped here, WHAT by the caller).
std::string FileLine(std::string_view file, std::string_view what);

// "safe-convert: FILE: refused: MESSAGE (RULE at LOCATION; refers to A, B)\n"
std::string FindingLine(std::string_view file, const Finding& f);

// "safe-convert: FILE: malformed input: MESSAGE\n"
std::string StatusLine(std::string_view file, const Status& s);

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_MESSAGES_H_
