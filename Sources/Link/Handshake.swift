// The handshake: TLS 1.3 first (TLS.swift), then protocol version, context, node ids and
// generations, and mutual proof of the pre-shared key by HMAC-SHA256 over the TLS
// connection's exported keying material, the hello and the challenge (both carry a
// fresh nonce). The key never crosses the wire; a peer without it learns nothing and
// gets no data, and a proof made on one TLS connection fails on any other, so a man in
// the middle who terminates TLS on both sides cannot relay it.

import AuditTrail
import Crypto
import Foundation
import Node

public struct LinkIdentity: Sendable {
  public var context: String
  public var nodeID: NodeID
  public var generation: Generation
  public var key: [UInt8]
  /// A backup serving its image trail to a next hop names the node whose MAT it relays.
  public var relays: NodeID?
  /// TLS with a self-signed certificate, or the operator's PKI (or plaintext on loopback).
  public var security: LinkSecurity

  public init(
    context: String, nodeID: NodeID, generation: Generation, key: [UInt8], relays: NodeID? = nil,
    security: LinkSecurity = LinkSecurity(nil)
  ) {
    self.context = context
    self.nodeID = nodeID
    self.generation = generation
    self.key = key
    self.relays = relays
    self.security = security
  }

  /// The same node serving positions of `origin`'s MAT (nil or itself: its own).
  public func relaying(_ origin: NodeID?) -> LinkIdentity {
    var relay = self
    relay.relays = origin == nodeID ? nil : origin
    return relay
  }

  /// A node as its config names it (context, id, generation), with its link key.
  public init(_ config: NodeConfig, key: [UInt8]) {
    self.init(
      context: config.contextName, nodeID: config.nodeId, generation: config.generation, key: key,
      security: LinkSecurity(config.tls))
  }
}

/// Who is at the other end, once proven.
public struct LinkPeer: Sendable {
  public var nodeID: NodeID
  public var generation: Generation
  /// The node whose MAT positions this peer serves: itself for a primary, the primary it
  /// receives from for a relaying backup.
  public var origin: NodeID

  public init(nodeID: NodeID, generation: Generation, origin: NodeID? = nil) {
    self.nodeID = nodeID
    self.generation = generation
    self.origin = origin ?? nodeID
  }

  /// A backup passing on what it received, not the primary that wrote it.
  public var isRelay: Bool { origin != nodeID }
}

public enum Handshake {
  /// 2: the link runs in TLS 1.3 and the proofs cover its exported keying material.
  public static let protocolVersion: UInt16 = 2
  /// How long either side waits for each handshake step.
  public static let stepTimeout = 10.0

  static func mac(
    _ role: String, key: [UInt8], binding: [UInt8], hello: Message.Hello, challenge: Message.Challenge
  ) -> [UInt8] {
    var data = Array("understudy-link-2 \(role)".utf8)
    data.append(contentsOf: binding)
    data.append(contentsOf: Message.hello(hello).frame.payload)
    data.append(contentsOf: Message.challengeBody(challenge))
    return Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
  }

  static func nonce() -> [UInt8] {
    var rng = SystemRandomNumberGenerator()
    return (0..<Message.nonceSize).map { _ in UInt8.random(in: 0...255, using: &rng) }
  }

  /// The backup's side. Returns the primary's identity once it has proven the key.
  /// `timeout` bounds TLS (a probe asks quickly; the default is a step's).
  public static func connect(_ link: Connection, as me: LinkIdentity, timeout: Double = stepTimeout) throws
    -> LinkPeer
  {
    try link.socket.secure(
      me.security, server: false, deadline: Clock.monotonicSeconds() + min(timeout, stepTimeout))
    let binding = try link.socket.channelBinding
    let hello = Message.Hello(
      protocolVersion: protocolVersion, context: me.context, nodeID: me.nodeID, generation: me.generation,
      nonce: nonce())
    try link.send(.hello(hello))
    guard case .challenge(let challenge) = try link.receive(timeout: stepTimeout) else {
      throw LinkError.badFrame(peer: link.peer, reason: "expected a challenge")
    }
    guard challenge.protocolVersion == protocolVersion, challenge.context == me.context else {
      throw link.refusing(
        "the primary speaks protocol \(challenge.protocolVersion) for context '\(challenge.context)'; this backup speaks \(protocolVersion) for '\(me.context)'"
      )
    }
    let expected = mac("primary", key: me.key, binding: binding, hello: hello, challenge: challenge)
    guard constantTimeEqual(expected, challenge.mac) else {
      throw link.refusing(
        "the primary did not prove it holds the link secret on this TLS connection: the two nodes' secret.key files differ, or something between them terminates TLS (a man in the middle)",
        told: "authentication failed: the backup's link secret differs from the primary's, or TLS is intercepted")
    }
    try link.send(.auth(mac: mac("backup", key: me.key, binding: binding, hello: hello, challenge: challenge)))
    return LinkPeer(nodeID: challenge.nodeID, generation: challenge.generation, origin: challenge.origin)
  }

  /// The primary's side. Returns the backup's identity once it has proven the key.
  public static func accept(_ link: Connection, as me: LinkIdentity) throws -> (LinkPeer, Message.Hello) {
    try link.socket.secure(me.security, server: true, deadline: Clock.monotonicSeconds() + stepTimeout)
    let binding = try link.socket.channelBinding
    guard case .hello(let hello) = try link.receive(timeout: stepTimeout) else {
      throw link.refusing("the first frame must be a hello")
    }
    guard hello.protocolVersion == protocolVersion else {
      throw link.refusing(
        "protocol version \(hello.protocolVersion) is not supported (this primary speaks \(protocolVersion))")
    }
    guard hello.context == me.context else {
      throw link.refusing("context '\(hello.context)' is not served here; this primary serves context '\(me.context)'")
    }
    var challenge = Message.Challenge(
      protocolVersion: protocolVersion, context: me.context, nodeID: me.nodeID, generation: me.generation,
      nonce: nonce(), origin: me.relays, mac: [])
    challenge.mac = mac("primary", key: me.key, binding: binding, hello: hello, challenge: challenge)
    try link.send(.challenge(challenge))
    guard case .auth(let proof) = try link.receive(timeout: stepTimeout) else {
      throw link.refusing("expected the backup's proof of the link secret")
    }
    guard constantTimeEqual(proof, mac("backup", key: me.key, binding: binding, hello: hello, challenge: challenge))
    else {
      throw link.refusing(
        "authentication failed: the backup's link secret differs from the primary's, or something between them terminates TLS (a man in the middle)"
      )
    }
    return (LinkPeer(nodeID: hello.nodeID, generation: hello.generation), hello)
  }

  /// Asks whoever serves `address` who it is and at which generation, each side proving
  /// the key, then hangs up telling it `reason`. Takeover asks "is the primary still
  /// there?"; an old primary asks "has someone taken over?".
  public static func probe(_ address: HostPort, as me: LinkIdentity, reason: String, timeout: Double = 2) throws
    -> LinkPeer
  {
    let socket = try Socket.connect(to: address, timeout: timeout)
    let link = Connection(socket: socket, maxPayload: Frame.maxControlPayload)
    defer { socket.shutdown() }
    let peer = try connect(link, as: me, timeout: timeout)
    link.refuse(reason)
    return peer
  }

  /// As `probe`, and when `ask(peer)` holds, also asks the peer how its generation began
  /// (base-query). nil base: it has none (it says why) or does not understand the question.
  public static func probeBase(
    _ address: HostPort, as me: LinkIdentity, reason: String, timeout: Double = 2, ask: (LinkPeer) -> Bool
  ) throws -> (LinkPeer, base: Message.GenerationBase?, why: String?) {
    let socket = try Socket.connect(to: address, timeout: timeout)
    let link = Connection(socket: socket, maxPayload: Frame.maxControlPayload)
    defer { socket.shutdown() }
    let peer = try connect(link, as: me, timeout: timeout)
    guard ask(peer) else {
      link.refuse(reason)
      return (peer, nil, nil)
    }
    try link.send(.baseQuery)
    do {
      let answer = try link.receive(timeout: max(timeout, 2))
      link.refuse(reason)
      guard case .base(let base) = answer else { return (peer, nil, "it answered the base query with \(answer.type)") }
      return (peer, base, nil)
    } catch LinkError.refusedByPeer(_, let why) {
      return (peer, nil, why)
    } catch {
      return (peer, nil, "no answer to the base query: \(error)")
    }
  }

  static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in a.indices { diff |= a[i] ^ b[i] }
    return diff == 0
  }
}
