// The link's TLS 1.3, tried as an attacker on the path would: a recording proxy reads
// every byte that crosses (no row value, nothing but TLS 1.3 records), a man in the
// middle with his own certificate, a byte flipped in transit, clients that do not speak
// TLS or never finish, a flood of idle connections, and an operator's own PKI.

import AuditTrail
import Foundation
import Harness
import Node
import TestSupport
import XCTest

@testable import Link

#if canImport(Glibc)
  import Glibc
#endif

final class TLSLinkTests: XCTestCase {
  static let canary = "canary-7f3a9c-credit-card-4111111111111111"

  func testTheWireShowsOnlyTLS13AndNoRowValueWhilePlaintextOnLoopbackWouldShowIt() throws {
    // TLS: the default.
    let tap = try TapProxy(target: nil)
    let pair = try Pair(self, backupConnectsTo: tap.port)
    tap.target = pair.port
    try pair.sql("CREATE TABLE cards(id INTEGER PRIMARY KEY, number TEXT)")
    let daemons = try pair.startDaemons()
    for i in 1...20 { try pair.sql("INSERT INTO cards VALUES (\(i), '\(Self.canary)-\(i)')") }
    try pair.waitForBackup()
    try pair.assertSameContent()
    try daemons.backup.stop()
    try daemons.primary.stop()
    Thread.sleep(forTimeInterval: 0.3)  // the proxy's last reads
    let captured = tap.captures
    XCTAssertGreaterThanOrEqual(captured.count, 1)
    for (index, c) in captured.enumerated() {
      XCTAssertNil(find(Self.canary, in: c.up + c.down), "connection \(index) shows a row value in clear")
      XCTAssertNil(find("default", in: c.up + c.down), "connection \(index) shows the context name in clear")
      try assertOnlyTLS13(c, "connection \(index)")
    }
    XCTAssertGreaterThan(captured.map { $0.down.count }.reduce(0, +), 2000, "the stream crossed the proxy")
    // Nor in what the nodes say about themselves: events, status, the daemon's output.
    let secret = String(decoding: try Secret.load(path: pair.primary + "/secret.key"), as: UTF8.self)
    for node in [pair.primary, pair.backup] {
      let said =
        (try String(contentsOfFile: node + "/events.jsonl", encoding: .utf8))
        + (try understudy(["status", "--node", node, "--json"])).stdout
        + (try understudy(["status", "--node", node])).stdout
        + ((try? String(contentsOfFile: node + ".log", encoding: .utf8)) ?? "")
      XCTAssertFalse(said.contains(Self.canary), "\(node) shows a row value")
      XCTAssertFalse(said.contains(secret), "\(node) shows the link secret")
    }

    // The same through the same proxy in plaintext (allowed on loopback only, for
    // benchmarks): the row value is there, so the check above can fail.
    let plainTap = try TapProxy(target: nil)
    let plain = try Pair(self, backupConnectsTo: plainTap.port)
    plainTap.target = plain.port
    try plain.sql("CREATE TABLE cards(id INTEGER PRIMARY KEY, number TEXT)")
    let environment = [LinkSecurity.plaintextVariable: "1"]
    let p = try Daemon(node: plain.primary, environment: environment)
    let b = try Daemon(node: plain.backup, environment: environment)
    try plain.sql("INSERT INTO cards VALUES (1, '\(Self.canary)')")
    try plain.waitForBackup()
    XCTAssertNotNil(find(Self.canary, in: plainTap.captures.flatMap { $0.down }), "plaintext carries the row")
    try b.stop()
    try p.stop()
  }

  func testAManInTheMiddleWithItsOwnCertificateIsRefusedByBothEnds() throws {
    let mitm = try MITMProxy()
    let pair = try Pair(self, backupConnectsTo: mitm.port)
    mitm.target = pair.port
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, '\(Self.canary)')")
    let primary = try Daemon(node: pair.primary)
    let backup = try Daemon(node: pair.backup)
    // TLS succeeded on both legs (the proxy read the hello in clear), and then the
    // proofs, bound to each leg's exporter, failed.
    XCTAssertTrue(eventually(15) { mitm.decryptedHellos > 0 }, "the man in the middle terminated TLS")
    XCTAssertTrue(
      eventually(15) {
        events(pair.backup).contains {
          $0["code"] as? Int == 9012 && ($0["message"] as? String ?? "").contains("man in the middle")
        }
      }, "the backup refused: \(events(pair.backup).suffix(3))")
    XCTAssertTrue(
      eventually(15) {
        events(pair.primary).contains {
          $0["code"] as? Int == 9012 && ($0["message"] as? String ?? "").contains("TLS is intercepted")
        }
      }, "the primary logged the refusal: \(events(pair.primary).suffix(3))")
    XCTAssertFalse(FileManager.default.fileExists(atPath: pair.backupDB), "the backup received a database")
    XCTAssertNil(find(Self.canary, in: mitm.decrypted), "the man in the middle saw a row")
    try backup.stop()

    // The primary's own check: a proof made for another TLS connection (what a relay
    // would pass on) is refused; the same proof over this connection's exporter passes.
    let key = try Secret.load(path: pair.primary + "/secret.key")
    let config = try NodeLayout(root: pair.backup).loadConfig()
    for relayed in [true, false] {
      let socket = try Socket.connect(to: try HostPort(parsing: "127.0.0.1:\(pair.port)"), timeout: 2)
      let link = Link.Connection(socket: socket, maxPayload: Frame.maxControlPayload)
      try socket.secure(.tls, server: false, deadline: Clock.monotonicSeconds() + 5)
      XCTAssertTrue(socket.security.hasPrefix("TLSv1.3"), socket.security)
      let hello = Message.Hello(
        protocolVersion: Handshake.protocolVersion, context: "default", nodeID: config.nodeId,
        generation: config.generation, nonce: Handshake.nonce())
      try link.send(.hello(hello))
      guard case .challenge(let challenge) = try link.receive(timeout: 5) else { return XCTFail("no challenge") }
      let binding = relayed ? [UInt8](repeating: 0x5a, count: 32) : try socket.channelBinding
      try link.send(.auth(mac: Handshake.mac("backup", key: key, binding: binding, hello: hello, challenge: challenge)))
      try link.send(.contextQuery)
      if relayed {
        XCTAssertThrowsError(try link.receive(timeout: 5)) { error in
          XCTAssertTrue("\(error)".contains("man in the middle"), "\(error)")
        }
      } else {
        guard case .contextAnswer = try link.receive(timeout: 5) else { return XCTFail("no answer") }
      }
      socket.shutdown()
    }
    XCTAssertTrue(primary.isRunning)
    try primary.stop()
  }

  func testAFlippedByteInTransitBreaksTheConnectionAndTheBackupReconnectsAndEndsEqual() throws {
    var seed = UInt64(Date().timeIntervalSince1970 * 1000) % 100_000
    if let given = ProcessInfo.processInfo.environment["UNDERSTUDY_TEST_SEED"], let s = UInt64(given) { seed = s }
    print("flipped-byte seed \(seed) (UNDERSTUDY_TEST_SEED replays it)")
    var rng = SeededGenerator(seed: seed)
    let tap = try TapProxy(target: nil)
    let pair = try Pair(self, backupConnectsTo: tap.port)
    tap.target = pair.port
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    for i in 1...40 { try pair.sql("INSERT INTO t VALUES (\(i), randomblob(1000))") }
    // Past the handshake (a few KB) and inside the copy or the stream.
    tap.flipDownAt = Int.random(in: 6_000...40_000, using: &rng)
    let primary = try Daemon(node: pair.primary)
    let backup = try Daemon(node: pair.backup)
    for i in 41...80 { try pair.sql("INSERT INTO t VALUES (\(i), randomblob(1000))") }
    try pair.waitForBackup()
    try pair.assertSameContent()
    XCTAssertTrue(tap.flipped, "the byte at \(tap.flipDownAt!) was flipped")
    XCTAssertGreaterThanOrEqual(tap.captures.count, 2, "the backup reconnected")
    let tlsFailure = events(pair.backup).contains {
      let message = $0["message"] as? String ?? ""
      return message.contains("TLS") && (message.contains("bad record mac") || message.contains("decrypt"))
    }
    XCTAssertTrue(tlsFailure, "the backup saw the record fail: \(events(pair.backup).suffix(5))")
    XCTAssertEqual(try understudy(["verify", "--node", pair.backup]).status, 0)
    try backup.stop()
    try primary.stop()
  }

  func testNonTLSClientsUnfinishedHandshakesAndFloodsAreDroppedWhileABackupReplicates() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'a')")
    let primary = try Daemon(node: pair.primary)
    XCTAssertTrue(eventually(5) { events(pair.primary).contains { $0["code"] as? Int == 9001 } })
    let port = UInt16(pair.port)
    let address = try HostPort(parsing: "127.0.0.1:\(port)")
    let started = Clock.monotonicSeconds()
    // A client that speaks the old plaintext protocol.
    let plaintext = try Socket.connect(to: address, timeout: 2)
    try plaintext.send(Frame(.hello, [UInt8](repeating: 1, count: 40)).encoded())
    // One that finishes TLS and then says nothing, and one that never starts it.
    let silent = try Socket.connect(to: address, timeout: 2)
    try silent.secure(.tls, server: false, deadline: Clock.monotonicSeconds() + 5)
    let idle = try Socket.connect(to: address, timeout: 2)
    // A flood of idle connections from another address (127.0.0.2), far past the bounds,
    // and one that connects and hangs up as fast as it can (127.0.0.3) all the while.
    let flood = try (0..<300).map { _ in try connect(from: "127.0.0.2", to: port) }
    defer { flood.forEach { close($0) } }
    let churning = StopFlag()
    let churn = Thread {
      while !churning.isSet { if let fd = try? connect(from: "127.0.0.3", to: port) { close(fd) } }
    }
    churn.start()
    // A real backup connects meanwhile and replicates.
    let backup = try Daemon(node: pair.backup)
    try pair.sql("INSERT INTO t VALUES (2, 'b')")
    try pair.waitForBackup(timeout: 30)
    try pair.assertSameContent()
    Thread.sleep(forTimeInterval: 2)
    churning.stop("test")
    // One address holds at most `perSource` unproven connections: the older ones went.
    XCTAssertTrue(
      eventually(5) { flood.filter { isClosedByPeer($0) }.count >= 300 - AdmissionGate.defaultPerSource },
      "closed: \(flood.filter { isClosedByPeer($0) }.count) of 300")
    XCTAssertTrue(isClosedByPeer(plaintext.fd), "the plaintext client was refused")
    // The rest go at the deadline, whatever they did.
    XCTAssertTrue(
      eventually(AdmissionGate.defaultDeadline + 5) {
        flood.allSatisfy { isClosedByPeer($0) } && isClosedByPeer(silent.fd) && isClosedByPeer(idle.fd)
      }, "every unauthenticated connection was dropped by the deadline")
    XCTAssertGreaterThanOrEqual(Clock.monotonicSeconds() - started, AdmissionGate.defaultDeadline - 1)
    // The backup's link survived all of it; the log stayed short.
    try pair.sql("INSERT INTO t VALUES (3, 'c')")
    try pair.waitForBackup()
    try pair.assertSameContent()
    XCTAssertTrue(primary.isRunning)
    let refusals = events(pair.primary).filter { $0["code"] as? Int == 9012 }
    XCTAssertTrue(
      refusals.contains { ($0["message"] as? String ?? "").contains("TLS") }, "the plaintext client: \(refusals)")
    XCTAssertTrue(refusals.contains { ($0["message"] as? String ?? "").contains("unauthenticated") }, "\(refusals)")
    let linkEvents = events(pair.primary).filter { [9011, 9012, 9013].contains($0["code"] as? Int ?? 0) }
    XCTAssertLessThan(linkEvents.count, 60, "a flood must not flood the log: \(linkEvents.count) events")
    XCTAssertEqual(try understudy(["trail", "dump", "--node", pair.primary, "--json"]).status, 0)
    try backup.stop()
    try primary.stop()
  }

  func testAnOperatorsPKIIsVerifiedAndAForeignCertificateOrAPublicKeyIsRefused() throws {
    let root = try temporaryDirectory(self)
    let pki = try PKI(root + "/pki")
    try pki.issue("primary", by: "ca")
    try pki.issue("backup", by: "ca")
    try pki.issue("rogue", by: "otherca")
    let port = freePort()
    let primary = root + "/primary"
    func tlsOptions(_ name: String, ca: String = "ca") -> [String] {
      ["--tls-cert", pki.cert(name), "--tls-key", pki.key(name), "--tls-ca", pki.cert(ca)]
    }
    var made = try understudy(
      ["init", "primary", "--node", primary, "--db", root + "/p.db", "--listen", "127.0.0.1:\(port)"]
        + tlsOptions("primary"))
    XCTAssertEqual(made.status, 0, made.stderr)
    func initBackup(_ name: String, _ tls: [String]) throws -> String {
      let node = root + "/" + name
      let made = try understudy(
        [
          "init", "backup", "--node", node, "--db", node + ".db", "--primary", "127.0.0.1:\(port)",
          "--secret-file", primary + "/secret.key",
        ] + tls)
      XCTAssertEqual(made.status, 0, made.stderr)
      return node
    }
    let backup = try initBackup("backup", tlsOptions("backup"))
    let config = try NodeLayout(root: backup).loadConfig()
    XCTAssertEqual(config.tls?.ca, pki.cert("ca"))
    try assertConforms(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: backup + "/understudy.json"))),
      to: "node-config.schema.json")
    made = try understudy(["sql", "--node", primary, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"])
    XCTAssertEqual(made.status, 0, made.stderr)
    let p = try Daemon(node: primary)
    let b = try Daemon(node: backup)
    made = try understudy(["sql", "--node", primary, "INSERT INTO t VALUES (1, 'x')"])
    let end = try XCTUnwrap(positionText(try understudy(["status", "--node", primary, "--json"]).json, "durableEnd"))
    made = try understudy(["wait", "--node", backup, "--applied", end, "--timeout", "30"])
    XCTAssertEqual(made.status, 0, made.stderr)
    try b.stop()

    // A backup whose certificate another CA signed (with the right secret) is refused,
    // and so is one with no certificate at all (the default, self-signed, mode).
    for (name, tls) in [("rogue", tlsOptions("rogue", ca: "ca")), ("nocert", [])] {
      let node = try initBackup(name, tls)
      let daemon = try Daemon(node: node)
      XCTAssertTrue(
        eventually(10) {
          events(node).contains {
            let message = $0["message"] as? String ?? ""
            return message.contains("TLS") && (message.contains("alert") || message.contains("certificate"))
          }
        },
        "\(name): \(events(node).suffix(3))")
      XCTAssertFalse(FileManager.default.fileExists(atPath: node + ".db"), "\(name) received a database")
      try daemon.stop()
    }
    XCTAssertTrue(p.isRunning)
    try p.stop()

    // Bad inputs, each named: part of a PKI, a key that is not the certificate's, a
    // private key others can read (refused at init and at start).
    made = try understudy([
      "init", "primary", "--node", root + "/x1", "--db", root + "/x1.db", "--tls-cert", pki.cert("ca"),
    ])
    XCTAssertNotEqual(made.status, 0)
    XCTAssertTrue(made.stderr.contains("--tls-key") && made.stderr.contains("--tls-ca"), made.stderr)
    made = try understudy(
      [
        "init", "primary", "--node", root + "/x2", "--db", root + "/x2.db", "--tls-cert", pki.cert("primary"),
        "--tls-key", pki.key("backup"), "--tls-ca", pki.cert("ca"),
      ])
    XCTAssertNotEqual(made.status, 0)
    XCTAssertTrue(made.stderr.contains(pki.key("backup")) && made.stderr.contains("does not belong"), made.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/x2"), "a refused init made a node")
    XCTAssertEqual(chmod(pki.key("primary"), 0o644), 0)
    let refused = try understudy(["start", "--node", primary])
    XCTAssertNotEqual(refused.status, 0)
    XCTAssertTrue(refused.stderr.contains("chmod 600 \(pki.key("primary"))"), refused.stderr)
  }

  // MARK: - Reading the capture

  func find(_ text: String, in bytes: [UInt8]) -> Int? {
    let needle = Array(text.utf8)
    guard bytes.count >= needle.count else { return nil }
    for i in 0...(bytes.count - needle.count)
    where bytes[i] == needle[0] && Array(bytes[i..<(i + needle.count)]) == needle {
      return i
    }
    return nil
  }

  /// Both directions parse as TLS records to the last byte: handshake records first
  /// (the ServerHello choosing TLS 1.3 in supported_versions), then only encrypted
  /// application data (and TLS 1.3's compatibility change_cipher_spec).
  func assertOnlyTLS13(_ c: TapProxy.Capture, _ what: String) throws {
    for (direction, bytes) in [("client", c.up), ("server", c.down)] where !bytes.isEmpty {
      var offset = 0
      var types: [UInt8] = []
      var firstHandshake: [UInt8] = []
      while offset + 5 <= bytes.count {
        let type = bytes[offset]
        let version = UInt16(bytes[offset + 1]) << 8 | UInt16(bytes[offset + 2])
        let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
        XCTAssertTrue([0x16, 0x14, 0x17].contains(type), "\(what) \(direction): record type \(type) at \(offset)")
        XCTAssertTrue([0x0301, 0x0303].contains(version), "\(what) \(direction): record version \(version)")
        XCTAssertLessThanOrEqual(length, 16384 + 256)
        if type == 0x16 && firstHandshake.isEmpty {
          firstHandshake = Array(bytes[(offset + 5)..<min(bytes.count, offset + 5 + length)])
        }
        types.append(type)
        offset += 5 + length
      }
      XCTAssertEqual(offset, bytes.count, "\(what) \(direction): the capture ends inside a record")
      XCTAssertEqual(types.first, 0x16, "\(what) \(direction) starts with a handshake")
      XCTAssertTrue(types.drop { $0 != 0x17 }.allSatisfy { $0 == 0x17 }, "\(what) \(direction): clear records late")
      XCTAssertTrue(types.contains(0x17), "\(what) \(direction): no encrypted data")
      if direction == "server" {
        XCTAssertEqual(firstHandshake.first, 2, "\(what): a ServerHello")
        // supported_versions (0x002b), length 2, TLS 1.3 (0x0304)
        XCTAssertNotNil(findBytes([0x00, 0x2b, 0x00, 0x02, 0x03, 0x04], in: firstHandshake), "\(what): TLS 1.3 chosen")
      } else {
        XCTAssertEqual(firstHandshake.first, 1, "\(what): a ClientHello")
      }
    }
  }

  func findBytes(_ needle: [UInt8], in bytes: [UInt8]) -> Int? {
    guard bytes.count >= needle.count else { return nil }
    return (0...(bytes.count - needle.count)).first { Array(bytes[$0..<($0 + needle.count)]) == needle }
  }
}

/// True once the peer has closed this socket (a read returns end of file or an error).
func isClosedByPeer(_ fd: Int32) -> Bool {
  var byte: UInt8 = 0
  let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source` (any of
/// 127.0.0.0/8 works on Linux): another host, as the primary sees it.
func connect(from source: String, to port: UInt16) throws -> Int32 {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  var local = sockaddr_in()
  local.sin_family = sa_family_t(AF_INET)
  local.sin_addr.s_addr = inet_addr(source)
  var remote = sockaddr_in()
  remote.sin_family = sa_family_t(AF_INET)
  remote.sin_addr.s_addr = inet_addr("127.0.0.1")
  remote.sin_port = port.bigEndian
  let size = socklen_t(MemoryLayout<sockaddr_in>.size)
  let bound = withUnsafePointer(to: &local) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) }
  }
  let connected = withUnsafePointer(to: &remote) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, size) }
  }
  guard bound == 0, connected == 0 else {
    let error = errno
    close(fd)
    throw LinkError.io(peer: "127.0.0.1:\(port) from \(source)", operation: "connect", errno: error)
  }
  return fd
}

/// A TCP proxy on 127.0.0.1 that records every byte each way, and can flip one byte of
/// the first connection's server-to-client stream.
final class TapProxy: @unchecked Sendable {  // state under `lock`
  struct Capture {
    var up: [UInt8] = []
    var down: [UInt8] = []
  }

  let port: Int
  private let listener: Listener
  private let lock = NSLock()
  private var recorded: [Capture] = []
  private var _target: Int?
  private var _flipDownAt: Int?
  private var _flipped = false

  var target: Int? {
    get { locked { _target } }
    set { locked { _target = newValue } }
  }
  var flipDownAt: Int? {
    get { locked { _flipDownAt } }
    set { locked { _flipDownAt = newValue } }
  }
  var flipped: Bool { locked { _flipped } }
  var captures: [Capture] { locked { recorded } }

  private func locked<T>(_ body: () -> T) -> T {
    lock.lock()
    defer { lock.unlock() }
    return body()
  }

  init(target: Int?) throws {
    port = freePort()
    _target = target
    listener = try Listener(address: try HostPort(parsing: "127.0.0.1:\(port)"))
    Thread { [self] in
      while true {
        guard let client = try? listener.accept(timeout: 0.1) else { continue }
        guard let target = self.target,
          let server = try? Socket.connect(to: try! HostPort(parsing: "127.0.0.1:\(target)"), timeout: 2)
        else {
          client.shutdown()
          continue
        }
        let index = locked {
          recorded.append(Capture())
          return recorded.count - 1
        }
        for (from, to, down) in [(client, server, false), (server, client, true)] {
          Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
              let n = buffer.withUnsafeMutableBytes { recv(from.fd, $0.baseAddress, $0.count, 0) }
              guard n > 0 else { break }
              var chunk = Array(buffer[0..<n])
              locked {
                if down {
                  let at = recorded[index].down.count
                  if index == 0, !_flipped, let flip = _flipDownAt, flip >= at, flip < at + n {
                    chunk[flip - at] ^= 0x01
                    _flipped = true
                  }
                  recorded[index].down += chunk
                } else {
                  recorded[index].up += chunk
                }
              }
              guard (try? to.send(chunk)) != nil else { break }
            }
            from.shutdown()
            to.shutdown()
          }.start()
        }
      }
    }.start()
  }
}

/// A man in the middle: it accepts the backup's TLS with its own self-signed
/// certificate, opens its own TLS to the primary, and relays what it decrypts.
final class MITMProxy: @unchecked Sendable {  // state under `lock`
  let port: Int
  private let listener: Listener
  private let lock = NSLock()
  private var _target: Int?
  private var _decrypted: [UInt8] = []
  private var _hellos = 0

  var target: Int? {
    get { locked { _target } }
    set { locked { _target = newValue } }
  }
  var decrypted: [UInt8] { locked { _decrypted } }
  var decryptedHellos: Int { locked { _hellos } }

  private func locked<T>(_ body: () -> T) -> T {
    lock.lock()
    defer { lock.unlock() }
    return body()
  }

  init() throws {
    port = freePort()
    listener = try Listener(address: try HostPort(parsing: "127.0.0.1:\(port)"))
    Thread { [self] in
      while true {
        guard let client = try? listener.accept(timeout: 0.1) else { continue }
        Thread { [self] in
          guard let target = self.target,
            let server = try? Socket.connect(to: try! HostPort(parsing: "127.0.0.1:\(target)"), timeout: 2),
            (try? client.secure(.tls, server: true, deadline: Clock.monotonicSeconds() + 5)) != nil,
            (try? server.secure(.tls, server: false, deadline: Clock.monotonicSeconds() + 5)) != nil
          else { return client.shutdown() }
          for (from, to) in [(client, server), (server, client)] {
            Thread { [self] in
              while true {
                var chunk: [UInt8] = []
                guard
                  (try? from.receive(
                    upTo: 65536, appendingTo: &chunk, deadline: Clock.monotonicSeconds() + 30, waitingFor: "bytes"))
                    != nil
                else { break }
                locked {
                  if from === client, _decrypted.isEmpty, chunk.count >= 9, chunk[8] == FrameType.hello.rawValue {
                    _hellos += 1
                  }
                  _decrypted += chunk
                }
                guard (try? to.send(chunk)) != nil else { break }
              }
              from.shutdown()
              to.shutdown()
            }.start()
          }
        }.start()
      }
    }.start()
  }
}

/// A CA and certificates made with the openssl command (Debian's openssl package).
struct PKI {
  let directory: String

  init(_ directory: String) throws {
    self.directory = directory
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for ca in ["ca", "otherca"] {
      try run([
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
        "/CN=understudy test \(ca)", "-keyout", key(ca), "-out", cert(ca),
      ])
      chmod(key(ca), 0o600)
    }
  }

  func cert(_ name: String) -> String { directory + "/\(name).crt" }
  func key(_ name: String) -> String { directory + "/\(name).key" }

  func issue(_ name: String, by ca: String) throws {
    try run([
      "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=\(name)", "-keyout",
      key(name), "-out", directory + "/\(name).csr",
    ])
    chmod(key(name), 0o600)
    try run([
      "x509", "-req", "-in", directory + "/\(name).csr", "-CA", cert(ca), "-CAkey", key(ca), "-CAcreateserial",
      "-days", "30", "-out", cert(name),
    ])
  }

  private func run(_ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0, "openssl \(arguments.joined(separator: " "))")
  }
}
