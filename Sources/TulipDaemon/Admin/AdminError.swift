/// Why an admin command failed; its message is the `error` of the `{"ok": false}` reply.
public struct AdminError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, for the operator.
    public var message: String

    /// Makes an error with `message`.
    public init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { self.message }
}
