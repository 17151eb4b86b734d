// Wakes a waiting thread when a file in a directory is written. The extractor watches
// the database's directory: a commit writes the database's WAL, so a commit wakes it at
// once, where polling the database every few milliseconds cost the primary a large
// share of a core while a backup was attached. Linux inotify; where it is not
// available (`init` returns nil) the caller polls.

import Glibc

public final class DirectoryWatch {
  /// Readable while events are queued: wait on it with poll(2).
  public let fd: Int32

  public init?(directory: String) {
    let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    guard fd >= 0 else { return nil }
    guard inotify_add_watch(fd, directory, UInt32(IN_MODIFY)) >= 0 else {
      close(fd)
      return nil
    }
    self.fd = fd
  }

  deinit { close(fd) }

  /// Discards the events queued so far: the caller looks at what it cares about itself.
  public func drain() {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
  }
}
