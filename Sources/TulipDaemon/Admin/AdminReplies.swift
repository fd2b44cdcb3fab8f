/// The JSON replies of the admin protocol, one object per line.
enum AdminReplies {
    static func failure(_ error: AdminError) -> AdminJSON {
        .object([("ok", .bool(false)), ("error", .string(error.message))])
    }

    static func status(_ status: DaemonStatus) -> AdminJSON {
        .object([
            ("ok", .bool(true)),
            ("pid", .int(Int64(status.pid))),
            ("uptime_seconds", .double(Self.rounded(status.uptimeSeconds))),
            ("config_generation", .int(Int64(status.configGeneration))),
            ("loop_lag_seconds", .double(status.loopLagSeconds)),
            ("reloads_total", .count(status.reloadsTotal)),
            ("reload_failures_total", .count(status.reloadFailuresTotal)),
            ("listeners", .array(status.listeners.map(Self.listener))),
        ])
    }

    static func listeners(_ listeners: [ListenerStatus]) -> AdminJSON {
        .object([("ok", .bool(true)), ("listeners", .array(listeners.map(Self.listener)))])
    }

    static func connections(_ connections: [ConnectionStatus]) -> AdminJSON {
        .object([
            ("ok", .bool(true)),
            (
                "connections",
                .array(
                    connections.map { connection in
                        .object([
                            ("listener", .string(connection.listener)),
                            ("protocol", .string(connection.protocolName)),
                            ("id", .count(connection.id)),
                            ("peer", .string(connection.peer)),
                            ("bytes_in", .count(connection.bytesIn)),
                            ("bytes_out", .count(connection.bytesOut)),
                            ("age_seconds", .double(Self.rounded(connection.ageSeconds))),
                        ])
                    }
                )
            ),
        ])
    }

    static func reloaded(_ outcome: ReloadOutcome) -> AdminJSON {
        func names(_ list: [String]) -> AdminJSON { .array(list.map { .string($0) }) }
        return .object([
            ("ok", .bool(true)),
            ("config_generation", .int(Int64(outcome.generation))),
            ("added", names(outcome.added)),
            ("removed", names(outcome.removed)),
            ("changed", names(outcome.changed)),
            ("unchanged", names(outcome.unchanged)),
        ])
    }

    static func listenerState(_ name: String, _ state: ListenerStatus.State) -> AdminJSON {
        .object([("ok", .bool(true)), ("listener", .string(name)), ("state", .string(state.rawValue))])
    }

    private static func listener(_ listener: ListenerStatus) -> AdminJSON {
        .object([
            ("name", .string(listener.name)),
            ("kind", .string(listener.kind)),
            ("address", .string(listener.address)),
            ("protocol", .string(listener.protocolName)),
            ("state", .string(listener.state.rawValue)),
            ("open_connections", .int(Int64(listener.openConnections))),
            ("accepted_total", .count(listener.acceptedTotal)),
            ("refused_total", .count(listener.refusedSum)),
            (
                "refused_by_reason",
                .object(listener.refusedTotal.sorted { $0.key < $1.key }.map { ($0.key, .count($0.value)) })
            ),
            ("bytes_received_total", .count(listener.bytesReceivedTotal)),
            ("bytes_sent_total", .count(listener.bytesSentTotal)),
            ("datagrams_received_total", .count(listener.datagramsReceivedTotal)),
            ("tls_handshake_failures_total", .count(listener.tlsHandshakeFailuresTotal)),
        ])
    }

    /// Milliseconds are enough for ages and uptimes, and keep the lines short.
    private static func rounded(_ seconds: Double) -> Double { (seconds * 1000).rounded() / 1000 }
}
