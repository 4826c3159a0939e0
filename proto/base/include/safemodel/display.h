// File: safemodel/display.h
//
// Text from a model, made safe to show on a terminal.
//
// Names, findings, metadata and paths that came from an input file (or from
// the worker that parsed it) are attacker-controlled. Written raw to a
// terminal, an ESC or a C1 CSI byte starts a control sequence (retitle or
// clear the screen, move the cursor, print a fake "OK"), and a bidirectional
// override reorders what the reader sees. Every line a person reads goes
// through EscapeForDisplay first; JSON output is escaped by the JSON encoder
// instead.
#ifndef SAFEMODEL_DISPLAY_H_
#define SAFEMODEL_DISPLAY_H_

#include <string>
#include <string_view>

#include "safemodel/export.h"

namespace safemodel {

// Returns `text` with every character that could control a terminal or hide
// or reorder text replaced by a visible escape, and everything else kept:
//   C0 controls (U+0000-U+001F, TAB and LF included) and DEL   -> \xNN
//   a byte that is not part of valid UTF-8 (0x80-0xFF)        -> \xNN
//   C1 controls (U+0080-U+009F, encoded in UTF-8)              -> \u0080
//   bidirectional embeddings, overrides, isolates and marks,
//   zero-width and other invisible format characters, line and
//   paragraph separators, tag characters (list in display.cc)  -> \u202e, \U000e0041
//   backslash                                                  -> \\ (so escapes are unambiguous)
// The result is printable ASCII plus valid UTF-8 of visible characters, on
// one line.
SAFEMODEL_EXPORT std::string EscapeForDisplay(std::string_view text);

}  // namespace safemodel

#endif  // SAFEMODEL_DISPLAY_H_
