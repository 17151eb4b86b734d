// TLS 1.3 under every link, through the system OpenSSL (the CTLS shim). With only
// `secret.key` shared, each process serves a self-signed certificate made in memory and
// neither end trusts certificates at all: the handshake's HMAC proof is computed over
// the TLS connection's exported keying material, so it proves the key on this one
// connection, and a man in the middle (who holds two connections, with two different
// exporters) cannot pass it on. With the operator's PKI (`TLSFiles`), both ends also
// present certificates and verify the peer's against the CA.

import CTLS
import Foundation
import Node

/// How a node's links are secured.
public enum LinkSecurity: Sendable, Equatable {
  /// TLS 1.3 with an in-memory self-signed certificate; the proof authenticates.
  case tls
  /// TLS 1.3 with the operator's certificate, key and CA; the peer's certificate must
  /// chain to the CA, and the proof is still required.
  case pki(TLSFiles)
  /// No TLS, for benchmarks and tests that compare: refused unless both ends are on
  /// loopback (`UNDERSTUDY_LINK_PLAINTEXT=1` in the environment of every process).
  case plaintextOnLoopback

  /// The environment variable that asks for `plaintextOnLoopback`.
  public static let plaintextVariable = "UNDERSTUDY_LINK_PLAINTEXT"

  /// What a node's config asks for, unless the environment asks for plaintext.
  public init(_ files: TLSFiles?) {
    if ProcessInfo.processInfo.environment[Self.plaintextVariable] == "1" {
      self = .plaintextOnLoopback
    } else if let files {
      self = .pki(files)
    } else {
      self = .tls
    }
  }

  /// Checks the files of an operator's PKI before a daemon serves with them: each
  /// readable, the key private to its owner, the key matching the certificate.
  public func check() throws {
    guard case .pki(let files) = self else { return }
    for path in [files.certificate, files.key, files.ca] where !FileManager.default.isReadableFile(atPath: path) {
      throw LinkError.tls(peer: "this node", reason: "cannot read \(path) (named in the node's tls config)")
    }
    var info = stat()
    if stat(files.key, &info) == 0, info.st_mode & 0o077 != 0 {
      throw LinkError.tls(
        peer: "this node",
        reason:
          "the TLS private key \(files.key) is readable or writable by others (mode \(String(info.st_mode & 0o777, radix: 8))); fix it with: chmod 600 \(files.key)"
      )
    }
    _ = try TLSContext.shared(server: true, self)
    _ = try TLSContext.shared(server: false, self)
  }
}

/// An OpenSSL context for one side of the link.
/// @unchecked Sendable: the SSL_CTX is set up once in `init` and only read afterwards
/// (SSL_new), which OpenSSL allows from any thread.
final class TLSContext: @unchecked Sendable {
  let pointer: UnsafeMutableRawPointer

  private init(server: Bool, files: TLSFiles?) throws {
    var error = [CChar](repeating: 0, count: 1024)
    guard
      let pointer = ctls_context_new(
        server ? 1 : 0, files?.certificate, files?.key, files?.ca, &error, error.count)
    else {
      throw LinkError.tls(peer: "this node", reason: text(error))
    }
    self.pointer = pointer
  }

  deinit { ctls_context_free(pointer) }

  private static let lock = NSLock()
  nonisolated(unsafe) private static var contexts: [String: TLSContext] = [:]

  /// One context per side and set of files for the life of the process: the
  /// self-signed certificate is made once, not per connection.
  static func shared(server: Bool, _ security: LinkSecurity) throws -> TLSContext {
    let files: TLSFiles?
    switch security {
    case .pki(let f): files = f
    default: files = nil
    }
    let name = "\(server) \(files.map { "\($0.certificate) \($0.key) \($0.ca)" } ?? "self-signed")"
    lock.lock()
    defer { lock.unlock() }
    if let context = contexts[name] { return context }
    let context = try TLSContext(server: server, files: files)
    contexts[name] = context
    return context
  }
}

extension Socket {
  /// Starts TLS 1.3 on this connected socket, as the side that accepted it (`server`)
  /// or the one that connected, within `deadline` (monotonic seconds). Plaintext is
  /// allowed on loopback only.
  public func secure(_ security: LinkSecurity, server: Bool, deadline: Double) throws {
    if security == .plaintextOnLoopback {
      guard isLoopback && isLocallyLoopback else {
        throw LinkError.tls(
          peer: peer,
          reason:
            "\(LinkSecurity.plaintextVariable)=1 asks for a plaintext link, which is allowed on loopback only; unset it"
        )
      }
      return
    }
    let context = try TLSContext.shared(server: server, security)
    try startTLS(context.pointer, server: server, deadline: deadline)
  }
}

/// The TLS connection of a socket: OpenSSL's SSL object on the non-blocking fd.
/// @unchecked Sendable: like the socket, it is used by one thread at a time; another
/// thread only shuts the fd down, which OpenSSL does not see until its next call.
final class TLSSession: @unchecked Sendable {
  let ssl: UnsafeMutableRawPointer

  init(_ ssl: UnsafeMutableRawPointer) { self.ssl = ssl }
  deinit { ctls_free(ssl) }

  static func lastError() -> String {
    var error = [CChar](repeating: 0, count: 512)
    ctls_last_error(&error, error.count)
    return text(error)
  }

  /// The exporter value the handshake's proof covers; nil if OpenSSL cannot give it
  /// (the handshake then fails closed: an empty binding would make a proof relayable).
  var channelBinding: [UInt8]? {
    var out = [UInt8](repeating: 0, count: 32)
    guard ctls_export(ssl, &out, out.count) == 1 else { return nil }
    return out
  }

  var version: String { String(cString: ctls_version(ssl)) }
  var cipher: String { String(cString: ctls_cipher(ssl)) }
}

/// The text of a NUL-terminated buffer a C call filled.
func text(_ buffer: [CChar]) -> String {
  String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
