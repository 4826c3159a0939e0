/* A library that announces being loaded: its constructor creates
 * "<path it was loaded from>.loaded". planting_test.cc copies it beside a
 * model under the names of the libraries safe-convert and safemodel-worker
 * need, and checks that no copy is ever loaded. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int safemodel_planted_symbol(void) { return 42; }

__attribute__((constructor)) static void AnnounceLoad(void) {
  Dl_info info;
  char marker[4096];
  if (dladdr((void*)&safemodel_planted_symbol, &info) == 0 || info.dli_fname == NULL) return;
  if (snprintf(marker, sizeof marker, "%s.loaded", info.dli_fname) >= (int)sizeof marker) return;
  int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
}
