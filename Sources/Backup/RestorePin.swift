// A restore reading the image trail back from a position keeps the purger from
// removing the files it reads (`state/restore-pin.json`, with the reader's pid: a pin
// whose process is gone no longer holds anything).

import AuditTrail
import Foundation
import Node

public enum RestorePin {
  struct Pin: Codable {
    var from: MATPosition
    var pid: Int32
    var what: String
  }

  static func path(_ layout: NodeLayout) -> String { layout.state + "/restore-pin.json" }

  public static func hold(_ layout: NodeLayout, from: MATPosition, what: String) throws {
    try StateFile.write(Pin(from: from, pid: getpid(), what: what), to: path(layout))
  }

  public static func release(_ layout: NodeLayout) { unlink(path(layout)) }

  /// The oldest position a live restore still reads, if any.
  static func held(_ layout: NodeLayout) throws -> MATPosition? {
    guard let pin = try StateFile.read(Pin.self, at: path(layout)) else { return nil }
    return kill(pin.pid, 0) == 0 || errno == EPERM ? pin.from : nil
  }
}
