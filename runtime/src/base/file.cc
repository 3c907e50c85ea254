//===- file.cc - read-only file mappings ----------------------------------===//

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/internal.h"

namespace moert {

moert_status_t MappedFile::Open(const char *path,
                                std::unique_ptr<MappedFile> *out) {
  out->reset();
  if (!path)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "path is NULL");
  int fd;
  do {
    fd = ::open(path, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    return moert_status_make(err == ENOENT ? MOERT_STATUS_NOT_FOUND
                                           : MOERT_STATUS_UNAVAILABLE,
                             "cannot open '%s': %s", path, std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return moert_status_make(MOERT_STATUS_UNAVAILABLE, "cannot stat '%s': %s",
                             path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "'%s' is not a regular file", path);
  }
  std::unique_ptr<MappedFile> file(new (std::nothrow) MappedFile());
  if (!file) {
    ::close(fd);
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void *map = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return moert_status_make(MOERT_STATUS_UNAVAILABLE, "cannot map '%s': %s",
                               path, std::strerror(err));
    }
    file->map_ = map;
    file->data_ = static_cast<const uint8_t *>(map);
  }
  ::close(fd);
  *out = std::move(file);
  return nullptr;
}

MappedFile::~MappedFile() {
  if (map_)
    ::munmap(map_, size_);
}

} // namespace moert
