/// Turns admin replies into text for people: a header and aligned tables.
///
/// Pure functions; `tulipd status` and friends print what they return (`--json` prints the reply
/// as it came instead).
public enum AdminTextFormatter {
    /// The reply as text, by what it carries: a status, a listener or connection list, a reload
    /// summary or a listener's new state.
    public static func render(_ response: AdminResponse) -> String {
        let object = response.object
        guard response.ok else { return "error: \(response.error ?? response.text)" }
        var lines: [String] = []
        if let pid = Self.text(object["pid"]) {
            lines.append(
                "tulipd pid \(pid), up \(Self.text(object["uptime_seconds"]) ?? "?") s, config generation \(Self.text(object["config_generation"]) ?? "?"), loop lag \(Self.milliseconds(object["loop_lag_seconds"])) ms"
            )
        }
        if case .array(let listeners)? = object["listeners"]?.value {
            if !lines.isEmpty { lines.append("") }
            lines += Self.table(
                headers: ["LISTENER", "KIND", "ADDRESS", "PROTOCOL", "STATE", "OPEN", "ACCEPTED", "REFUSED"],
                keys: [
                    "name", "kind", "address", "protocol", "state", "open_connections", "accepted_total",
                    "refused_total",
                ],
                rows: listeners
            )
        }
        if case .array(let connections)? = object["connections"]?.value {
            lines += Self.table(
                headers: ["LISTENER", "PROTOCOL", "ID", "PEER", "BYTES IN", "BYTES OUT", "AGE S"],
                keys: ["listener", "protocol", "id", "peer", "bytes_in", "bytes_out", "age_seconds"],
                rows: connections
            )
            if connections.isEmpty { lines.append("(no open connections)") }
        }
        if object["added"] != nil {
            lines.append("reloaded: config generation \(Self.text(object["config_generation"]) ?? "?")")
            for key in ["added", "removed", "changed", "unchanged"] {
                guard case .array(let names)? = object[key]?.value, !names.isEmpty else { continue }
                lines.append("  \(key): \(names.compactMap { Self.text($0) }.joined(separator: ", "))")
            }
        }
        if object["pid"] == nil, let listener = Self.text(object["listener"]), let state = Self.text(object["state"]) {
            lines.append("\(listener): \(state)")
        }
        return lines.joined(separator: "\n")
    }

    private static func table(headers: [String], keys: [String], rows: [JSONValue.Node]) -> [String] {
        var cells = [headers]
        for row in rows {
            guard case .object(let object) = row.value else { continue }
            cells.append(keys.map { Self.text(object[$0]) ?? "-" })
        }
        var widths = [Int](repeating: 0, count: headers.count)
        for row in cells {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        return cells.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }.joined(separator: "  ")
        }
    }

    private static func text(_ node: JSONValue.Node?) -> String? {
        switch node?.value {
        case .string(let text)?: text
        case .number(let number)?: number.literal
        case .bool(let value)?: value ? "true" : "false"
        default: nil
        }
    }

    private static func milliseconds(_ node: JSONValue.Node?) -> String {
        guard case .number(let number)? = node?.value else { return "?" }
        let millis = (number.doubleValue * 10_000).rounded() / 10
        return "\(millis)"
    }
}
