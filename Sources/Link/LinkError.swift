// What can go wrong on the replication link, each naming the peer.

import Foundation

public enum LinkError: Error, CustomStringConvertible, Sendable {
  case resolve(address: String, reason: String)
  case connect(address: String, reason: String)
  case listen(address: String, reason: String)
  case closed(peer: String)
  case timeout(peer: String, waitingFor: String)
  case io(peer: String, operation: String, errno: Int32)
  /// A frame that is not what the protocol allows: checksum, size, type or content.
  case badFrame(peer: String, reason: String)
  /// The peer said no, with its reason.
  case refusedByPeer(peer: String, reason: String)
  /// We said no to the peer (the reason was also sent to it).
  case refused(peer: String, reason: String)
  /// TLS could not be set up, or a TLS record failed (OpenSSL's reason).
  case tls(peer: String, reason: String)

  public var description: String {
    switch self {
    case .resolve(let address, let reason): "cannot resolve \(address): \(reason)"
    case .connect(let address, let reason): "cannot connect to \(address): \(reason)"
    case .listen(let address, let reason): "cannot listen on \(address): \(reason)"
    case .closed(let peer): "the link to \(peer) was closed by the peer"
    case .timeout(let peer, let what): "no \(what) from \(peer) in time"
    case .io(let peer, let operation, let errno):
      "\(operation) on the link to \(peer) failed: \(String(cString: strerror(errno)))"
    case .badFrame(let peer, let reason): "bad frame from \(peer): \(reason)"
    case .refusedByPeer(let peer, let reason): "\(peer) refused the link: \(reason)"
    case .refused(let peer, let reason): "refused the link from \(peer): \(reason)"
    case .tls(let peer, let reason): "TLS with \(peer): \(reason)"
    }
  }

  /// Worth retrying later without operator action (a dropped or refused connection).
  public var isTransient: Bool {
    switch self {
    // A TLS record that fails its authentication is a damaged or tampered stream: a new
    // connection starts clean.
    case .connect, .closed, .timeout, .io, .resolve, .tls: true
    default: false
    }
  }
}
