// The headers nearly every test file includes, precompiled once per build
// and reused by every test program (safemodel_test_target in
// tests/CMakeLists.txt): parsing them took about a fifth of each test file's
// compile time, in two builds per CI run. Only stable system and
// third-party headers: a project header here would rebuild every test when
// it changes. Each test file still includes what it uses.
#ifndef SAFEMODEL_TESTS_TESTING_TEST_PCH_H_
#define SAFEMODEL_TESTS_TESTING_TEST_PCH_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#endif  // SAFEMODEL_TESTS_TESTING_TEST_PCH_H_
