// A short array of per-dimension values (a tensor's sizes or strides): up to
// N of them held in the object itself, more in a heap block of their own.
// A checkpoint of 100,000 small tensors made 100,000 heap vectors of one or
// two values each for its shapes, and as many again for its strides
// (tests/bench/PROFILE.md, branches `workertensor` and `pickle4`).
//
// Contract: a copy owns its own values (never a shared block); a moved-from
// array is empty; every operation is O(size). The caller bounds the size
// (the formats' rank limits): the class allocates whatever it is given.
#ifndef SAFEMODEL_LOADER_INLINE_DIMS_H_
#define SAFEMODEL_LOADER_INLINE_DIMS_H_

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <type_traits>
#include <vector>

namespace safemodel::loader {

template <typename T, size_t N>
class InlineDims {
  static_assert(std::is_trivially_copyable_v<T>, "values are copied and freed without constructors");

 public:
  static constexpr size_t kInline = N;
  using value_type = T;
  using const_iterator = const T*;
  using iterator = const T*;

  InlineDims() = default;
  InlineDims(std::initializer_list<T> values) { Assign(values.begin(), values.size()); }
  InlineDims(std::span<const T> values) { Assign(values.data(), values.size()); }  // NOLINT: the values
  InlineDims(const std::vector<T>& values) { Assign(values.data(), values.size()); }  // NOLINT
  InlineDims(const InlineDims& other) { Assign(other.data(), other.size_); }
  InlineDims(InlineDims&& other) noexcept { Take(other); }
  InlineDims& operator=(const InlineDims& other) {
    if (this != &other) Assign(other.data(), other.size_);
    return *this;
  }
  InlineDims& operator=(InlineDims&& other) noexcept {
    if (this != &other) {
      Free();
      Take(other);
    }
    return *this;
  }
  ~InlineDims() { Free(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const T* data() const { return size_ <= N ? inline_ : heap_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }
  T operator[](size_t i) const { return data()[i]; }
  std::span<const T> span() const { return {data(), size_}; }
  std::vector<T> ToVector() const { return {begin(), end()}; }

  friend bool operator==(const InlineDims& a, const InlineDims& b) {
    return std::ranges::equal(a.span(), b.span());
  }
  friend bool operator==(const InlineDims& a, const std::vector<T>& b) {
    return std::ranges::equal(a.span(), b);
  }

 private:
  void Assign(const T* values, size_t n) {
    Free();
    T* to = inline_;
    if (n > N) {
      heap_ = new T[n];
      to = heap_;
    }
    std::copy(values, values + n, to);
    size_ = n;
  }
  // Takes `other`'s values (its heap block, if any); `other` becomes empty.
  void Take(InlineDims& other) {
    size_ = other.size_;
    if (size_ <= N) {
      std::copy(other.inline_, other.inline_ + size_, inline_);
    } else {
      heap_ = other.heap_;
    }
    other.size_ = 0;
  }
  void Free() {
    if (size_ > N) delete[] heap_;
    size_ = 0;
  }

  size_t size_ = 0;
  union {
    T inline_[N];
    T* heap_;  // size_ > N: new[]-allocated, owned
  };
};

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_INLINE_DIMS_H_
