// The program that builds tests/testing/test_pch.h's precompiled header for
// every test program to reuse (tests/CMakeLists.txt); it runs no test.
