// A frame's length field is a claim: the reader judges it on the header, before waiting
// for or allocating a payload, and a frame that stops arriving is a stalled link, shown
// by `status`. Decoder tests without sockets, one over a real socket fed byte by byte,
// and a hostile primary (holding the key) against a real backup daemon.

import AuditTrail
import Foundation
import Link
import Node
import TestSupport
import XCTest

@testable import Primary

final class LinkHardeningTests: XCTestCase {
  func frames() -> [Frame] {
    var rng = SeededGenerator(seed: 12)
    let big = (0..<(300 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    return [
      Message.heartbeat(trailEnd: MATPosition(sno: 1, rba: 64), newestCommitMicros: 5, sentMicros: 6).frame,
      Message.copyRequest.frame,
      Message.records(position: MATPosition(sno: 2, rba: 128), bytes: big).frame,
      Message.refusal(reason: "no").frame,
    ]
  }

  func testAFrameFedByteByByteDecodes() throws {
    for frame in frames() {
      var decoder = FrameDecoder(peer: "test", maxPayload: Frame.maxStreamPayload)
      let bytes = frame.encoded()
      var decoded: Frame?
      for (i, b) in bytes.enumerated() {
        XCTAssertNil(decoded, "a frame came out before its last byte")
        XCTAssertTrue((1...(bytes.count - i)).contains(decoder.wanted), "wanted \(decoder.wanted) at byte \(i)")
        decoded = try decoder.feed([b][...])
      }
      XCTAssertEqual(decoded?.type, frame.type)
      XCTAssertEqual(decoded?.payload, frame.payload)
    }
    // And in pieces of any size.
    var rng = SeededGenerator(seed: 3)
    for frame in frames() {
      var decoder = FrameDecoder(peer: "test", maxPayload: Frame.maxStreamPayload)
      let bytes = frame.encoded()
      var offset = 0
      var decoded: Frame?
      while decoded == nil {
        let n = min(decoder.wanted, Int.random(in: 1...70_000, using: &rng))
        decoded = try decoder.feed(bytes[offset..<(offset + n)])
        offset += n
      }
      XCTAssertEqual(offset, bytes.count)
      XCTAssertEqual(decoded?.payload, frame.payload)
    }
  }

  func testALengthOverTheLimitIsRefusedOnTheHeader() throws {
    var header = Message.records(position: MATPosition(sno: 1, rba: 64), bytes: []).frame.encoded()
    header.replaceSubrange(0..<4, with: [0x00, 0x00, 0x00, 0x3F])  // 0x3F000000
    // The largest legitimate frame: a batch just short of full, then the largest record.
    XCTAssertEqual(Frame.maxStreamPayload, (1 << 30) + (1 << 20) + 36)
    XCTAssertEqual(Frame.extractorBatchBytes, Extractor.batchBytes)
    // Within the overall maximum, but not within what the image trail file has room for.
    var decoder = FrameDecoder(peer: "10.0.0.1:7400", maxPayload: Frame.maxStreamPayload) {
      StreamLimits.receiving($0, roomInFile: 65536 - 64)
    }
    XCTAssertNil(try decoder.feed(header[0..<8]))
    XCTAssertThrowsError(try decoder.feed(header[8..<9])) { error in
      let text = "\(error)"
      XCTAssertTrue(text.contains("10.0.0.1:7400") && text.contains("1056964608"), text)
      XCTAssertTrue(text.contains("at most \(12 + 65536 - 64)"), text)
    }
    // Fixed-size frames at their size, unknown ones not at all.
    XCTAssertEqual(
      StreamLimits.receiving(.heartbeat, roomInFile: nil),
      Message.heartbeat(trailEnd: MATPosition(sno: 1, rba: 64), newestCommitMicros: 0, sentMicros: 0).frame.payload
        .count)
    XCTAssertNil(StreamLimits.receiving(.hello, roomInFile: nil))
    // The primary's refusal (its reason, capped at 4096 bytes) still gets through.
    let reason = Message.refusal(reason: String(repeating: "é", count: 5000)).frame.payload.count
    XCTAssertLessThanOrEqual(reason, try XCTUnwrap(StreamLimits.receiving(.refusal, roomInFile: 0)))
    // Over the overall maximum, with no per-type limit.
    header.replaceSubrange(0..<4, with: [0xF0, 0xFF, 0xFF, 0xFF])
    var plain = FrameDecoder(peer: "p", maxPayload: Frame.maxStreamPayload)
    XCTAssertThrowsError(try plain.feed(header[0..<9])) { XCTAssertTrue("\($0)".contains("4294967280"), "\($0)") }
    // No payload deadline grows to minutes.
    XCTAssertLessThanOrEqual(Frame.payloadSeconds(length: 0x3F00_0000), 60)
  }

  /// A real socket: a frame trickled byte by byte arrives whole; one that stops arriving
  /// is given up after `Frame.progressTimeout`, whatever the caller's deadline.
  func testOverASocketTrickledFramesDecodeAndAStalledOneTimesOut() throws {
    let port = freePort()
    let listener = try Listener(address: try HostPort(parsing: "127.0.0.1:\(port)"))
    let client = try Socket.connect(to: try HostPort(parsing: "127.0.0.1:\(port)"), timeout: 2)
    let server = try XCTUnwrap(try listener.accept(timeout: 2))
    let frame = Message.refusal(reason: "trickled").frame
    let bytes = frame.encoded()
    Thread {
      for b in bytes {
        try? client.send([b])
        usleep(2000)
      }
      // Then a header whose payload never comes.
      try? client.send(Array(Frame(.copyData, [UInt8](repeating: 1, count: 1000)).encoded().prefix(20)))
    }.start()
    let got = try Frame.read(from: server, maxPayload: 1 << 20, deadline: Clock.monotonicSeconds() + 10)
    XCTAssertEqual(got.payload, frame.payload)
    let started = Clock.monotonicSeconds()
    XCTAssertThrowsError(try Frame.read(from: server, maxPayload: 1 << 20, deadline: Clock.monotonicSeconds() + 100)) {
      XCTAssertTrue("\($0)".contains("stalled at 11 of 1000 bytes"), "\($0)")
    }
    let waited = Clock.monotonicSeconds() - started
    XCTAssertLessThan(waited, Frame.progressTimeout + 2)
    withExtendedLifetime(client) {}
  }

  func testAHostilePrimarysHugeLengthIsRefusedAtOnceAndAStallShowsInStatus() throws {
    let pair = try Pair(self)
    try pair.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
    var (primary, backup) = try pair.startDaemons()
    try primary.stop()

    let identity = try pair.primaryIdentity()
    let mat = NodeLayout(root: pair.primary).mat
    var listener: Listener? = try Listener(address: try HostPort(parsing: "127.0.0.1:\(pair.port)"))
    func streamingLink() throws -> (Link.Connection, MATPosition) {
      let socket = try XCTUnwrap(try listener!.accept(timeout: 15), "the backup did not reconnect")
      let link = Link.Connection(socket: socket, maxPayload: Frame.maxControlPayload)
      _ = try Handshake.accept(link, as: identity)
      guard case .start(let from, _) = try link.receive(timeout: 5) else { throw LinkError.closed(peer: "no start") }
      let (header, size) = try mat.headerAndSize(sno: from.sno)
      try link.send(.fileStart(header: header, size: UInt64(size)))
      return (link, from)
    }
    let hugeHeaders: [(String, UInt32, FrameType)] = [
      ("records frame of 0x3F000000 bytes", 0x3F00_0000, .records),
      ("heartbeat of 0x3F000000 bytes", 0x3F00_0000, .heartbeat),
      ("records frame over the protocol's maximum", 0xFFFF_FFF0, .records),
    ]
    for (name, length, type) in hugeHeaders {
      let (link, _) = try streamingLink()
      var header: [UInt8] = []
      withUnsafeBytes(of: length.littleEndian) { header += $0 }
      header += [0x12, 0x34, 0x56, 0x78, type.rawValue]
      let sent = Clock.monotonicSeconds()
      try link.socket.send(header)
      // The backup hangs up at once: it does not wait for a payload that will not come.
      XCTAssertThrowsError(
        try {
          while case .ack = try link.receive(timeout: 3) {}
        }(), name
      ) { error in
        XCTAssertFalse("\(error)".contains("in time"), "\(name): the backup waited: \(error)")
      }
      XCTAssertLessThan(Clock.monotonicSeconds() - sent, 2.5, name)
      XCTAssertTrue(backup.isRunning, "the backup died after: \(name)")
      XCTAssertTrue(
        eventually(2) {
          events(pair.backup).contains {
            $0["code"] as? Int == 9013 && ($0["message"] as? String ?? "").contains("127.0.0.1:\(pair.port)")
              && ($0["message"] as? String ?? "").contains("\(length) bytes")
          }
        }, "\(name): no 9013 naming the primary and the length: \(events(pair.backup).suffix(3))")
    }
    // It allocated nothing like the claimed length.
    let status = try String(contentsOfFile: "/proc/\(backup.process.processIdentifier)/status", encoding: .utf8)
    let peakKB = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.flatMap {
      Int($0.split(separator: " ").dropFirst().first ?? "")
    }
    XCTAssertLessThan(try XCTUnwrap(peakKB, status), 300_000, "peak resident memory of the backup, KB")

    // A link that goes silent mid-stream is shown as stalled while it is still open.
    let (silent, _) = try streamingLink()
    XCTAssertTrue(
      try eventually(4) {
        let s = try understudy(["status", "--node", pair.backup, "--json"])
        return (s.json as? [String: Any])?["linkStalledSince"] as? String != nil
      }, "status did not show the silent link as stalled")
    let text = try understudy(["status", "--node", pair.backup])
    XCTAssertTrue(text.stdout.contains("link stalled since"), text.stdout)
    try assertConforms(try understudy(["status", "--node", pair.backup, "--json"]).json, to: "status.schema.json")
    try assertConforms(try stateFile(pair.backup, "backup-runtime.json"), to: "state-backup-runtime.schema.json")
    XCTAssertThrowsError(try { while case .ack = try silent.receive(timeout: 10) {} }())

    // The real primary again: a legitimate stream continues.
    listener = nil
    primary = try Daemon(node: pair.primary)
    try pair.sql("INSERT INTO t VALUES (2, 'two')")
    try pair.waitForBackup()
    try pair.assertSameContent()
    // `wait` reads the database; the state the daemon publishes every 0.25 s may trail it.
    var s = try understudy(["status", "--node", pair.backup, "--json"])
    XCTAssertTrue(
      try eventually(3) {
        s = try understudy(["status", "--node", pair.backup, "--json"])
        return (s.json as? [String: Any])?["linkStalledSince"] is NSNull
      }, s.stdout)
    try backup.stop()
    try primary.stop()
    _ = backup
  }
}
