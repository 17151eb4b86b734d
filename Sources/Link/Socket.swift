// Blocking TCP sockets with deadlines. The link is one long-lived stream per backup,
// read and written by one thread that also fsyncs between frames, so plain sockets
// with poll(2) timeouts are the whole need; every wait has a deadline, so a stop
// request or a silent peer is always noticed. Once `secure` has run (TLS.swift), the
// same calls go through TLS 1.3 on the socket, made non-blocking so that the deadlines
// still hold inside a TLS record.

import AuditTrail
import CTLS
import Foundation
import Node

public final class Socket: @unchecked Sendable {
  public let fd: Int32
  /// `host:port` of the other end, for messages.
  public let peer: String
  /// The TLS connection, once `secure` started one.
  private var tls: TLSSession?

  init(fd: Int32, peer: String) {
    self.fd = fd
    self.peer = peer
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
    // A peer that stops reading must not block a sender forever.
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  }

  deinit {
    tls = nil  // sends close_notify while the fd is still open
    Glibc.close(fd)
  }

  /// Shuts the connection both ways; a thread blocked on it wakes up.
  public func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

  public static func connect(to address: HostPort, timeout: Double) throws -> Socket {
    var lastError = "no address"
    for info in try resolve(address, passive: false) {
      let fd = socket(info.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      guard fd >= 0 else { continue }
      let flags = fcntl(fd, F_GETFL)
      _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
      var result = info.address.withUnsafeBytes {
        Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
      }
      if result != 0 && errno == EINPROGRESS {
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&pfd, 1, Int32(timeout * 1000)) == 1 {
          var error: Int32 = 0
          var length = socklen_t(MemoryLayout<Int32>.size)
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
          result = error == 0 ? 0 : -1
          errno = error
        } else {
          errno = ETIMEDOUT
        }
      }
      if result == 0 {
        _ = fcntl(fd, F_SETFL, flags)
        return Socket(fd: fd, peer: address.description)
      }
      lastError = String(cString: strerror(errno))
      Glibc.close(fd)
    }
    throw LinkError.connect(address: address.description, reason: lastError)
  }

  /// Sends all of `bytes` or throws.
  public func send(_ bytes: [UInt8]) throws {
    if let tls { return try send(bytes, through: tls) }
    var sent = 0
    try bytes.withUnsafeBytes { raw in
      while sent < raw.count {
        let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
        if n < 0 {
          if errno == EINTR { continue }
          if errno == EAGAIN {
            throw LinkError.timeout(peer: peer, waitingFor: "room to send (the peer stopped reading)")
          }
          throw LinkError.io(peer: peer, operation: "send", errno: errno)
        }
        sent += n
      }
    }
  }

  /// A peer that stops reading must not block a sender forever (as SO_SNDTIMEO does
  /// for a plain socket).
  static let sendTimeout = 30.0

  private func send(_ bytes: [UInt8], through tls: TLSSession) throws {
    var sent = 0
    let deadline = Clock.monotonicSeconds() + Self.sendTimeout
    try bytes.withUnsafeBytes { raw in
      while sent < raw.count {
        let n = ctls_write(tls.ssl, raw.baseAddress! + sent, Int32(min(raw.count - sent, 1 << 30)))
        if n > 0 {
          sent += Int(n)
          continue
        }
        try awaitTLS(n, deadline: deadline, waitingFor: "room to send (the peer stopped reading)", operation: "send")
      }
    }
  }

  /// Waits for what OpenSSL asked for (`result` of a call that made no progress), or
  /// throws what ended the connection.
  private func awaitTLS(_ result: Int32, deadline: Double, waitingFor what: String, operation: String) throws {
    let events: Int16
    switch result {
    case CTLS_WANT_READ: events = Int16(POLLIN)
    case CTLS_WANT_WRITE: events = Int16(POLLOUT)
    case CTLS_CLOSED: throw LinkError.closed(peer: peer)
    default: throw LinkError.tls(peer: peer, reason: "\(operation) failed: \(TLSSession.lastError())")
    }
    var pfd = pollfd(fd: fd, events: events, revents: 0)
    while true {
      let left = deadline - Clock.monotonicSeconds()
      guard left > 0 else { throw LinkError.timeout(peer: peer, waitingFor: what) }
      let r = poll(&pfd, 1, Int32(min(left * 1000, Double(Int32.max)).rounded(.up)))
      if r < 0 && errno == EINTR { continue }
      if r < 0 { throw LinkError.io(peer: peer, operation: "poll", errno: errno) }
      if r == 0 { throw LinkError.timeout(peer: peer, waitingFor: what) }
      return
    }
  }

  /// Runs the TLS handshake on this connected socket (see `secure`).
  func startTLS(_ context: UnsafeMutableRawPointer, server: Bool, deadline: Double) throws {
    precondition(tls == nil, "TLS started twice")
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    var error = [CChar](repeating: 0, count: 512)
    guard let ssl = ctls_new(context, fd, server ? 1 : 0, &error, error.count) else {
      throw LinkError.tls(peer: peer, reason: text(error))
    }
    let session = TLSSession(ssl)
    while true {
      let r = ctls_handshake(ssl)
      if r == 1 { break }
      do {
        try awaitTLS(r, deadline: deadline, waitingFor: "TLS handshake", operation: "handshake")
      } catch LinkError.tls(_, let reason) {
        throw LinkError.tls(
          peer: peer,
          reason:
            "\(reason) (the peer must speak TLS 1.3; with an operator's PKI, its certificate must chain to this node's CA)"
        )
      }
    }
    tls = session
  }

  /// The TLS exporter value of this connection (empty without TLS): what the
  /// handshake's proof covers, so that it holds on this connection only.
  public var channelBinding: [UInt8] {
    get throws {
      guard let tls else { return [] }
      guard let binding = tls.channelBinding, binding.count == 32 else {
        throw LinkError.tls(peer: peer, reason: "OpenSSL gave no exported keying material for the key proof")
      }
      return binding
    }
  }

  /// "TLSv1.3 TLS_AES_256_GCM_SHA384", or "plaintext".
  public var security: String { tls.map { "\($0.version) \($0.cipher)" } ?? "plaintext" }

  /// Whether the peer's address is a loopback one (127.0.0.0/8, ::1 or ::ffff:127.x).
  public var isLoopback: Bool { Self.isLoopback(fd, getpeername) }
  /// Whether this end's own address is.
  var isLocallyLoopback: Bool { Self.isLoopback(fd, getsockname) }

  private static func isLoopback(
    _ fd: Int32, _ name: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
  ) -> Bool {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let r = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { name(fd, $0, &length) }
    }
    guard r == 0 else { return false }
    let bytes = withUnsafeBytes(of: storage) { Array($0) }
    switch Int32(storage.ss_family) {
    case AF_INET: return bytes[4] == 127  // sin_addr, network order
    case AF_INET6:
      let address = bytes[8..<24]  // sin6_addr
      let mapped = address.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff][...]
      return address.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) || (mapped && bytes[20] == 127)
    default: return false
    }
  }

  /// Waits until data can be read, up to `timeout` seconds. False on timeout.
  public func waitReadable(timeout: Double) throws -> Bool {
    try waitReadable(timeout: timeout, orAlso: Int32?.none).socket
  }

  /// Waits up to `timeout` seconds until the socket or `other` is readable, and says
  /// which is. A wait under a millisecond is rounded up to one, not down to none: a
  /// loop around a zero wait spins.
  public func waitReadable(timeout: Double, orAlso other: Int32?) throws -> (socket: Bool, other: Bool) {
    // Bytes already decrypted are readable now, whatever the socket says.
    if let tls, ctls_pending(tls.ssl) > 0 { return (true, false) }
    var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
    if let other { fds.append(pollfd(fd: other, events: Int16(POLLIN), revents: 0)) }
    let millis = Int32(min(max(0, timeout) * 1000, Double(Int32.max)).rounded(.up))
    while true {
      let r = poll(&fds, nfds_t(fds.count), millis)
      if r < 0 && errno == EINTR { continue }
      if r < 0 { throw LinkError.io(peer: peer, operation: "poll", errno: errno) }
      return (fds[0].revents != 0, fds.count > 1 && fds[1].revents != 0)
    }
  }

  /// Reads what one recv gives, at most `count` bytes (at least one), appending it to
  /// `buffer`; the wait is bounded by `deadline` (monotonic seconds). Only as much is
  /// allocated as is asked for, so a caller can grow a buffer as bytes arrive.
  public func receive(upTo count: Int, appendingTo buffer: inout [UInt8], deadline: Double, waitingFor what: String)
    throws
  {
    precondition(count > 0)
    if let tls { return try receive(upTo: count, appendingTo: &buffer, deadline: deadline, waitingFor: what, tls) }
    while true {
      guard try waitReadable(timeout: deadline - Clock.monotonicSeconds()) else {
        throw LinkError.timeout(peer: peer, waitingFor: what)
      }
      let (n, error) = Self.read(upTo: min(count, Self.plainRead), appendingTo: &buffer) {
        (Glibc.recv(fd, $0, $1, 0), errno)
      }
      if n == 0 { throw LinkError.closed(peer: peer) }
      if n < 0 {
        if error == EINTR || error == EAGAIN { continue }
        throw LinkError.io(peer: peer, operation: "recv", errno: error)
      }
      return
    }
  }

  private func receive(
    upTo count: Int, appendingTo buffer: inout [UInt8], deadline: Double, waitingFor what: String, _ tls: TLSSession
  ) throws {
    while true {
      // Read first, wait only when OpenSSL says it must (the fd is non-blocking): what it
      // has already buffered is never left waiting on a poll of the socket. One read
      // yields at most one TLS record (16 KiB).
      let (result, _) = Self.read(upTo: min(count, Self.tlsRecord), appendingTo: &buffer) {
        (Int(ctls_read(tls.ssl, $0, Int32($1))), 0)
      }
      if result > 0 { return }
      try awaitTLS(Int32(result), deadline: deadline, waitingFor: what, operation: "receive")
    }
  }

  /// The most one TLS read returns: a record's plaintext.
  static let tlsRecord = 16 << 10
  /// The most one plain recv takes: scratch under malloc's mmap threshold (128 KiB), so
  /// that a read does not map and unmap memory.
  static let plainRead = 64 << 10

  /// Runs `read` (a recv or an SSL_read of at most its count into its pointer, returning
  /// the count read and errno) into scratch memory and appends what it read. Growing
  /// `buffer` by `count` zeros and cutting it back cost a debug build tens of
  /// milliseconds per 16 KiB TLS record (256 KiB filled element by element): a backlog
  /// over TLS crawled at 0.4 MB/s with the receiver at 100% CPU.
  private static func read(
    upTo count: Int, appendingTo buffer: inout [UInt8], _ read: (UnsafeMutableRawPointer, Int) -> (Int, Int32)
  ) -> (Int, Int32) {
    withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { scratch in
      let (n, error) = read(scratch.baseAddress!, count)
      if n > 0 { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[..<n])) }
      return (n, error)
    }
  }

  struct Resolved {
    var family: Int32
    var address: [UInt8]
  }

  static func resolve(_ address: HostPort, passive: Bool) throws -> [Resolved] {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    if passive { hints.ai_flags = AI_PASSIVE }
    var list: UnsafeMutablePointer<addrinfo>?
    let r = getaddrinfo(address.host.isEmpty ? nil : address.host, String(address.port), &hints, &list)
    guard r == 0, let first = list else {
      throw LinkError.resolve(address: address.description, reason: String(cString: gai_strerror(r)))
    }
    defer { freeaddrinfo(list) }
    var result: [Resolved] = []
    var item: UnsafeMutablePointer<addrinfo>? = first
    while let i = item {
      let bytes = UnsafeRawBufferPointer(start: i.pointee.ai_addr, count: Int(i.pointee.ai_addrlen))
      result.append(Resolved(family: i.pointee.ai_family, address: Array(bytes)))
      item = i.pointee.ai_next
    }
    return result
  }
}

/// A listening TCP socket.
public final class Listener: @unchecked Sendable {
  public let fd: Int32
  public let address: HostPort

  public init(address: HostPort) throws {
    guard let info = try Socket.resolve(address, passive: true).first else {
      throw LinkError.listen(address: address.description, reason: "no address")
    }
    let fd = socket(info.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else {
      throw LinkError.listen(address: address.description, reason: String(cString: strerror(errno)))
    }
    var one: Int32 = 1
    // A restarted daemon must get its port back while old connections sit in TIME_WAIT.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    let bound = info.address.withUnsafeBytes {
      bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
    }
    guard bound == 0, Glibc.listen(fd, 64) == 0 else {
      let reason = String(cString: strerror(errno))
      Glibc.close(fd)
      throw LinkError.listen(address: address.description, reason: reason)
    }
    self.fd = fd
    self.address = address
  }

  deinit { Glibc.close(fd) }

  /// A port on 127.0.0.1 that nobody listens on right now (for demos and benchmarks).
  public static func ephemeralPort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { Glibc.close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return UInt16(bigEndian: address.sin_port)
  }

  /// The next connection, or nil after `timeout` seconds.
  public func accept(timeout: Double) throws -> Socket? {
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    let r = poll(&pfd, 1, Int32(timeout * 1000))
    if r < 0 && errno == EINTR { return nil }
    guard r > 0 else { return nil }
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let client = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(fd, $0, &length) }
    }
    guard client >= 0 else { return nil }
    return Socket(fd: client, peer: Self.describe(storage))
  }

  static func describe(_ storage: sockaddr_storage) -> String {
    var copy = storage
    var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
    var port = [CChar](repeating: 0, count: Int(NI_MAXSERV))
    let r = withUnsafePointer(to: &copy) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        getnameinfo(
          $0, socklen_t(MemoryLayout<sockaddr_storage>.size), &host, socklen_t(host.count), &port,
          socklen_t(port.count), NI_NUMERICHOST | NI_NUMERICSERV)
      }
    }
    guard r == 0 else { return "unknown peer" }
    let h = text(host)
    return h.contains(":") ? "[\(h)]:\(text(port))" : "\(h):\(text(port))"
  }
}

#if canImport(Glibc)
  import Glibc
#endif
