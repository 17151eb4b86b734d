// The frame decoder without sockets: a stream of frames fed byte by byte and in random
// chunkings (seeded; the seed is printed) decodes to the same frames, several may come
// out of one chunk, a partial one waits, and the header checks hold on the header.

import AuditTrail
import Link
import Node
import XCTest

final class FrameBufferTests: XCTestCase {
  func frames() -> [Frame] {
    var rng = SeededGenerator(seed: 12)
    let big = (0..<(300 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    return [
      Message.heartbeat(trailEnd: MATPosition(sno: 1, rba: 64), newestCommitMicros: 5, sentMicros: 6).frame,
      Message.copyRequest.frame,  // an empty payload
      Message.records(position: MATPosition(sno: 2, rba: 128), bytes: big).frame,
      Message.ack(acked: MATPosition(sno: 2, rba: 4096), applied: MATPosition(sno: 2, rba: 128)).frame,
      Message.refusal(reason: "no").frame,
      Message.records(position: MATPosition(sno: 2, rba: 8192), bytes: Array(big[0..<100])).frame,
      Message.copyRequest.frame,
    ]
  }

  func stream() -> [UInt8] { frames().flatMap { $0.encoded() } }

  func assertSameFrames(_ got: [Frame], file: StaticString = #filePath, line: UInt = #line) {
    let want = frames()
    XCTAssertEqual(got.count, want.count, file: file, line: line)
    for (g, w) in zip(got, want) {
      XCTAssertEqual(g.type, w.type, file: file, line: line)
      XCTAssertEqual(g.payload, w.payload, file: file, line: line)
    }
  }

  func testAStreamFedByteByByteDecodesEachFrameOnItsLastByte() throws {
    let bytes = stream()
    let ends = frames().reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1.encoded().count) }
    var buffer = FrameBuffer(peer: "test", maxPayload: Frame.maxStreamPayload)
    var got: [Frame] = []
    for (i, b) in bytes.enumerated() {
      buffer.append([b])
      while let frame = try buffer.next() {
        XCTAssertEqual(i + 1, ends[got.count], "frame \(got.count) came out at byte \(i + 1), not on its last byte")
        got.append(frame)
      }
    }
    assertSameFrames(got)
    XCTAssertTrue(buffer.isEmpty)
  }

  func testAStreamInRandomChunkingsDecodes() throws {
    let bytes = stream()
    for seed in UInt64(1)...40 {
      var rng = SeededGenerator(seed: seed)
      var buffer = FrameBuffer(peer: "test", maxPayload: Frame.maxStreamPayload)
      var got: [Frame] = []
      var offset = 0
      // Small pieces, large ones (several frames in one), and everything in between.
      let most = [1, 7, 64, 5_000, 70_000, 400_000][Int(seed) % 6]
      while offset < bytes.count {
        let n = min(bytes.count - offset, Int.random(in: 1...most, using: &rng))
        buffer.append(bytes[offset..<(offset + n)])
        offset += n
        while let frame = try buffer.next() { got.append(frame) }
      }
      if got.count != frames().count { print("FrameBufferTests: chunking seed \(seed) (pieces up to \(most)) failed") }
      assertSameFrames(got)
      XCTAssertTrue(buffer.isEmpty, "seed \(seed)")
    }
    print("FrameBufferTests: random chunkings with seeds 1...40 decoded")
  }

  func testSeveralFramesFromOneChunkAndAPartialOneKept() throws {
    let bytes = stream()
    let firstTwo = frames()[0].encoded().count + frames()[1].encoded().count
    var buffer = FrameBuffer(peer: "test", maxPayload: Frame.maxStreamPayload)
    buffer.append(bytes[0..<(firstTwo + 20)])  // two frames and 20 bytes of the third
    XCTAssertEqual(try buffer.next()?.type, .heartbeat)
    XCTAssertEqual(try buffer.next()?.type, .copyRequest)
    XCTAssertNil(try buffer.next())
    let partial = try XCTUnwrap(buffer.partial)
    XCTAssertEqual(partial.type, .records)
    XCTAssertEqual(partial.received, 20 - Frame.headerSize)
    XCTAssertEqual(buffer.wanted, partial.length - partial.received)
    buffer.append(bytes[(firstTwo + 20)...])
    var rest: [Frame] = []
    while let frame = try buffer.next() { rest.append(frame) }
    XCTAssertEqual(rest.map(\.type), frames()[2...].map(\.type))
  }

  func testALengthOverTheLimitIsRefusedOnItsHeaderWhateverTheChunking() throws {
    var header = Message.records(position: MATPosition(sno: 1, rba: 64), bytes: []).frame.encoded()
    header.replaceSubrange(0..<4, with: [0x00, 0x00, 0x00, 0x3F])  // 0x3F000000
    let limit: (FrameType) -> Int? = { StreamLimits.receiving($0, roomInFile: 65536 - 64) }
    // A heartbeat first, then the lying header: the heartbeat comes out, the header throws
    // as soon as its ninth byte is in, with no payload sent at all.
    let heartbeat = Message.heartbeat(trailEnd: MATPosition(sno: 1, rba: 64), newestCommitMicros: 0, sentMicros: 0)
    let bytes = heartbeat.frame.encoded() + header
    for piece in [1, 2, 5, 9, bytes.count] {
      var buffer = FrameBuffer(peer: "10.0.0.1:7400", maxPayload: Frame.maxStreamPayload)
      var offset = 0
      var frames: [Frame] = []
      var thrown: Error?
      while offset < bytes.count && thrown == nil {
        let n = min(piece, bytes.count - offset)
        buffer.append(bytes[offset..<(offset + n)])
        offset += n
        do {
          while let f = try buffer.next(limit: limit) { frames.append(f) }
        } catch { thrown = error }
      }
      XCTAssertEqual(frames.map(\.type), [.heartbeat], "pieces of \(piece)")
      // Refused once the header was whole, before any of the payload it claims.
      let headerEnd = heartbeat.frame.encoded().count + Frame.headerSize
      XCTAssertTrue((headerEnd..<(headerEnd + piece)).contains(offset), "refused at \(offset) (pieces of \(piece))")
      let text = "\(try XCTUnwrap(thrown, "pieces of \(piece)"))"
      XCTAssertTrue(text.contains("10.0.0.1:7400") && text.contains("1056964608"), text)
      XCTAssertTrue(text.contains("at most \(12 + 65536 - 64)") && text.contains("refused on its header"), text)
    }
    // Over the overall maximum, with no per-type limit.
    header.replaceSubrange(0..<4, with: [0xF0, 0xFF, 0xFF, 0xFF])
    var plain = FrameBuffer(peer: "p", maxPayload: Frame.maxStreamPayload)
    plain.append(header)
    XCTAssertThrowsError(try plain.next()) { XCTAssertTrue("\($0)".contains("4294967280"), "\($0)") }
  }

  func testATypeNotAcceptedHereIsRefusedOnItsHeader() throws {
    var buffer = FrameBuffer(peer: "p", maxPayload: Frame.maxStreamPayload)
    buffer.append(Message.copyRequest.frame.encoded())
    XCTAssertThrowsError(try buffer.next(limit: { StreamLimits.receiving($0, roomInFile: nil) })) {
      XCTAssertTrue("\($0)".contains("unexpected copy-request frame"), "\($0)")
    }
    var unknown = Message.copyRequest.frame.encoded()
    unknown[8] = 200
    var other = FrameBuffer(peer: "p", maxPayload: Frame.maxStreamPayload)
    other.append(unknown)
    XCTAssertThrowsError(try other.next()) { XCTAssertTrue("\($0)".contains("unknown frame type 200"), "\($0)") }
  }

  func testAFlippedPayloadByteFailsTheChecksumOnTheFramesLastByte() throws {
    var bytes = Message.refusal(reason: "a reason").frame.encoded()
    bytes[Frame.headerSize + 3] ^= 0x01
    var buffer = FrameBuffer(peer: "p", maxPayload: Frame.maxStreamPayload)
    for b in bytes.dropLast() {
      buffer.append([b])
      XCTAssertNil(try buffer.next())
    }
    buffer.append([bytes.last!])
    XCTAssertThrowsError(try buffer.next()) { XCTAssertTrue("\($0)".contains("checksum mismatch"), "\($0)") }
  }
}
