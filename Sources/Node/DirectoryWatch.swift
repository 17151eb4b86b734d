// Wakes a waiting thread when a file in a directory is written. The extractor watches
// the database's directory: a commit writes the database's WAL, so a commit wakes it at
// once, where polling the database every few milliseconds cost the primary a large
// share of a core while a backup was attached. Linux inotify; where it is not
// available (`init` returns nil) the caller polls.
//
// A watch costs every write into the directory an inotify event, paid by the writer
// (about 4 µs a commit, measured with `perf` under `bench replicate`), so it is armed
// only while the caller is about to wait, and disarmed while there is work anyway.

import Glibc

public final class DirectoryWatch {
  /// Readable while events are queued: wait on it with poll(2).
  public let fd: Int32
  public let directory: String
  private var watch: Int32?

  public init?(directory: String) {
    let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    guard fd >= 0 else { return nil }
    self.fd = fd
    self.directory = directory
    guard arm() else { return nil }
  }

  deinit { close(fd) }

  /// Watches the directory from now on. True if this call set the watch: a write just
  /// before it woke nobody, so the caller looks once more. False if it was already set
  /// (or cannot be).
  @discardableResult
  public func arm() -> Bool {
    guard watch == nil else { return false }
    let wd = inotify_add_watch(fd, directory, UInt32(IN_MODIFY))
    guard wd >= 0 else { return false }
    watch = wd
    return true
  }

  /// Stops watching (writes into the directory cost nothing again) and drops queued events.
  public func disarm() {
    guard let watch else { return }
    inotify_rm_watch(fd, watch)
    drain()
    self.watch = nil
  }

  /// Discards the events queued so far: the caller looks at what it cares about itself.
  public func drain() {
    guard watch != nil else { return }  // nothing is queued while disarmed
    var buffer = [UInt8](repeating: 0, count: 4096)
    while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
  }
}
