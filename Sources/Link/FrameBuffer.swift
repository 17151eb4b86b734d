// A frame decoder over a byte stream that arrives in any chunking: bytes are appended as
// they come (a TCP read, a TLS record, one byte at a time in a test), and `next` yields
// the frames they complete, one per call, keeping a partial frame for later. Several
// frames may come out of one chunk; a frame never comes out before its last byte. Each
// frame's header is judged by `FrameDecoder` as soon as it is whole, with the limit the
// caller passes to `next` at that moment, so that a limit that depends on the frames
// before (the room left in the receiver's image-trail file) sees them applied.

public struct FrameBuffer {
  private let peer: String
  private let maxPayload: Int
  private var bytes: [UInt8] = []
  private var start = 0
  private var decoder: FrameDecoder?

  public init(peer: String, maxPayload: Int) {
    self.peer = peer
    self.maxPayload = maxPayload
  }

  /// Bytes received and not yet handed to a frame's decoder.
  public var buffered: Int { bytes.count - start }

  /// The frame being decoded, once its header is in: its type, length and payload so far.
  public var partial: (type: FrameType, length: Int, received: Int)? {
    guard let decoder, let type = decoder.type, let length = decoder.length else { return nil }
    return (type, length, decoder.received)
  }

  /// How many more bytes the frame under way needs (a header's worth between frames).
  public var wanted: Int { decoder?.wanted ?? Frame.headerSize }

  /// Whether no frame is under way and no byte is waiting: the stream is between frames.
  public var isEmpty: Bool { decoder == nil && buffered == 0 }

  public mutating func append(_ chunk: some Sequence<UInt8>) {
    if start > 0 && start >= bytes.count / 2 {
      bytes.removeFirst(start)
      start = 0
    }
    bytes.append(contentsOf: chunk)
  }

  /// The next whole frame in what was appended, or nil until more bytes arrive. A header
  /// over `maxPayload` or `limit`, an unknown type or a checksum mismatch throws.
  public mutating func next(limit: ((FrameType) -> Int?)? = nil) throws -> Frame? {
    while buffered > 0 {
      if decoder == nil { decoder = FrameDecoder(peer: peer, maxPayload: maxPayload, limit: limit) }
      let take = min(decoder!.wanted, buffered)
      let piece = bytes[start..<(start + take)]
      start += take
      if let frame = try decoder!.feed(piece) {
        decoder = nil
        return frame
      }
    }
    return nil
  }
}
