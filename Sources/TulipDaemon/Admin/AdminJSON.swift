/// A JSON value as the admin socket writes it: built for one reply, then serialised to one line.
///
/// Objects keep their keys in the order given, so replies read the same every time.
enum AdminJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([AdminJSON])
    case object([(String, AdminJSON)])

    static func == (lhs: AdminJSON, rhs: AdminJSON) -> Bool { lhs.serialized == rhs.serialized }

    /// An unsigned count; counters never reach `Int64.max` in practice, and clamping keeps the JSON
    /// an integer.
    static func count(_ value: UInt64) -> AdminJSON { .int(Int64(clamping: value)) }

    /// The value as compact JSON text, without a newline.
    var serialized: String {
        var text = ""
        self.write(into: &text)
        return text
    }

    private func write(into text: inout String) {
        switch self {
        case .null: text += "null"
        case .bool(let value): text += value ? "true" : "false"
        case .int(let value): text += String(value)
        case .double(let value):
            // JSON has no NaN or infinity.
            text += value.isFinite ? String(value) : "null"
        case .string(let value): text += StderrLogHandler.jsonString(value)
        case .array(let elements):
            text += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { text += "," }
                element.write(into: &text)
            }
            text += "]"
        case .object(let members):
            text += "{"
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { text += "," }
                text += StderrLogHandler.jsonString(key)
                text += ":"
                value.write(into: &text)
            }
            text += "}"
        }
    }
}
