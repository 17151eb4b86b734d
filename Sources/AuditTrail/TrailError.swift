// Errors of the audit trail. Each names the file and rba where it happened.

public enum TrailError: Error, CustomStringConvertible {
  /// Damage that is not a torn tail: the trail cannot be trusted past `position`.
  case corrupt(file: String, position: MATPosition, reason: String)
  /// The header of a trail file is unreadable or belongs elsewhere.
  case badFile(file: String, reason: String)
  /// A position that is not the start of a record in this trail.
  case notARecordBoundary(MATPosition, reason: String)
  /// An operating-system call failed.
  case io(operation: String, path: String, errno: Int32)
  /// A MAT append failed after some bytes may have reached the file; this writer is unusable.
  case writerFailed(reason: String)
  /// A transaction whose commit record would exceed the format's limit.
  case recordTooLarge(txid: TransactionID, bytes: Int)

  public var description: String {
    switch self {
    case .corrupt(let file, let position, let reason):
      "audit trail corrupt in \(file) at \(position): \(reason)"
    case .badFile(let file, let reason):
      "audit trail file \(file): \(reason)"
    case .notARecordBoundary(let position, let reason):
      "\(position) is not a record boundary of this audit trail: \(reason)"
    case .io(let operation, let path, let errno):
      "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
    case .recordTooLarge(let txid, let bytes):
      "transaction \(txid) is too large for the audit trail: its commit record would be \(bytes) bytes, the limit is \(TrailFormat.maxPayload); split it into smaller transactions"
    case .writerFailed(let reason):
      "audit trail writer stopped: \(reason); reopen the node to run recovery"
    }
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
