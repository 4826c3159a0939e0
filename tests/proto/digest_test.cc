// The digests (proto/digest.h): known answers, streaming in pieces equal to
// one call, a hasher reused after Finish (and FinishInto), and the SHA-256's first use
// touching no file (the parent hashes the input on a thread while the
// conversion counts and opens its descriptors: a file opened there, as
// OpenSSL's EVP layer does with openssl.cnf on first use, once took the
// descriptor a conversion had counted on; Cli.AHandfulOfDescriptorsIsEnough).
#include "proto/digest.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <string>

#include <gtest/gtest.h>

namespace safemodel {
namespace {

ByteView View(const std::string& s) { return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

TEST(Digest, Sha256KnownAnswers) {
  EXPECT_EQ(ToHex(Sha256(View(""))), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ToHex(Sha256(View("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two blocks (FIPS 180-2's second example).
  EXPECT_EQ(ToHex(Sha256(View("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Digest, PiecesEqualOneCallAndAHasherIsReusedAfterFinish) {
  std::string data(1 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 9));
  for (DigestAlgorithm algorithm : {DigestAlgorithm::kSha256, DigestAlgorithm::kXxh3_128}) {
    const std::string whole = Digest(algorithm, View(data));
    auto h = MakeHasher(algorithm);
    for (size_t off = 0, step = 1; off < data.size(); off += step, step = step * 3 + 1) {
      h->Update(View(data.substr(off, step)));
    }
    EXPECT_EQ(h->Finish(), whole);
    h->Update(View("abc"));
    EXPECT_EQ(h->Finish(), Digest(algorithm, View("abc"))) << "Finish starts the next digest afresh";
    // FinishInto: the same bytes, and the hasher reset as well.
    uint8_t out[Hasher::kMaxDigestBytes + 1];
    out[whole.size()] = 0xa5;
    h->Update(View(data));
    ASSERT_EQ(h->FinishInto(out), whole.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(out), whole.size()), whole);
    EXPECT_EQ(out[whole.size()], 0xa5) << "nothing written past the digest";
    h->Update(View("abc"));
    EXPECT_EQ(h->Finish(), Digest(algorithm, View("abc")));
  }
}

// In a child whose every open kills it (seccomp), the first SHA-256 of the
// process must still complete.
TEST(Digest, TheFirstSha256OpensNoFile) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 2, 0),
#if defined(SYS_open)
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_open, 1, 0),
#else
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 1, 0),
#endif
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
      _exit(2);
    }
    auto h = MakeHasher(DigestAlgorithm::kSha256);
    h->Update(View("abc"));
    _exit(ToHex(h->Finish()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << "cannot install the seccomp filter";
  EXPECT_FALSE(WIFSIGNALED(status)) << "killed by signal " << WTERMSIG(status)
                                    << " (SIGSYS: the first SHA-256 opened a file)";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace safemodel
