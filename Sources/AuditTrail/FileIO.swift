// The few POSIX calls the trail needs, each turning failure into a TrailError that
// names the path. One helper owns the durable-create dance (temp, write, sync, rename,
// sync the directory).

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An open file descriptor, closed when the value is released.
public final class FileHandle: @unchecked Sendable {
  // @unchecked: the descriptor is immutable; pread/pwrite at explicit offsets need no lock.
  public let fd: Int32
  public let path: String

  public init(path: String, flags: Int32, mode: mode_t = 0o644) throws {
    let fd = open(path, flags | O_CLOEXEC, mode)
    guard fd >= 0 else { throw TrailError.io(operation: "open", path: path, errno: errno) }
    self.fd = fd
    self.path = path
  }

  deinit { close(fd) }

  public func size() throws -> Int {
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw TrailError.io(operation: "stat", path: path, errno: errno) }
    return Int(st.st_size)
  }

  /// Reads up to `count` bytes at `offset`; fewer only at end of file.
  public func read(count: Int, at offset: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
      let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
      if n < 0 {
        if errno == EINTR { continue }
        throw TrailError.io(operation: "read", path: path, errno: errno)
      }
      if n == 0 { break }
      done += n
    }
    if done < count { out.removeLast(count - done) }
    return out
  }

  public func write(_ bytes: [UInt8], at offset: Int) throws {
    var done = 0
    while done < bytes.count {
      let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
      if n < 0 {
        if errno == EINTR { continue }
        throw TrailError.io(operation: "write", path: path, errno: errno)
      }
      done += n
    }
  }

  /// The offset of the first non-zero byte in `[from, to)`, read in 1 MiB chunks and
  /// compared with memcmp: the tail of a 64 MiB preallocated file is scanned at every open.
  public func firstNonZero(from: Int, to: Int) throws -> Int? {
    var offset = from
    while offset < to {
      let chunk = try read(count: min(FileHandle.zeros.count, to - offset), at: offset)
      if chunk.isEmpty { return nil }
      let differs = chunk.withUnsafeBytes { a in
        FileHandle.zeros.withUnsafeBytes { z in memcmp(a.baseAddress!, z.baseAddress!, a.count) != 0 }
      }
      if differs, let i = chunk.firstIndex(where: { $0 != 0 }) { return offset + i }
      offset += chunk.count
    }
    return nil
  }

  static let zeros = [UInt8](repeating: 0, count: 1 << 20)

  public func syncData() throws {
    guard fdatasync(fd) == 0 else { throw TrailError.io(operation: "fdatasync", path: path, errno: errno) }
  }

  public func sync() throws {
    guard fsync(fd) == 0 else { throw TrailError.io(operation: "fsync", path: path, errno: errno) }
  }
}

public enum DurableFile {
  /// Makes a directory entry change (create, rename, unlink) durable.
  public static func syncDirectory(_ path: String) throws {
    let dir = try FileHandle(path: path, flags: O_RDONLY | O_DIRECTORY)
    try dir.sync()
  }

  /// Writes `path` whole or not at all: temp file, write, fsync, rename, fsync directory.
  /// `zeroFill` extends the file with written zeros to that size (real preallocation:
  /// a later overwrite plus fdatasync then touches no file-system metadata).
  public static func create(path: String, contents: [UInt8], zeroFill: Int = 0, mode: mode_t = 0o644) throws {
    let temp = path + ".tmp"
    unlink(temp)
    do {
      let file = try FileHandle(path: temp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode)
      try file.write(contents, at: 0)
      if zeroFill > contents.count {
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var offset = contents.count
        while offset < zeroFill {
          let n = min(chunk.count, zeroFill - offset)
          try file.write(n == chunk.count ? chunk : Array(chunk[0..<n]), at: offset)
          offset += n
        }
      }
      try file.sync()
    } catch {
      unlink(temp)
      throw error
    }
    guard rename(temp, path) == 0 else {
      let e = errno
      unlink(temp)
      throw TrailError.io(operation: "rename to", path: path, errno: e)
    }
    try syncDirectory(parent(of: path))
  }

  public static func parent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
  }

  public static func exists(_ path: String) -> Bool {
    access(path, F_OK) == 0
  }
}
