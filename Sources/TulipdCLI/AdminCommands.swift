import ArgumentParser
import TulipDaemon

/// Where the admin client finds the socket: `--socket`, or the `admin.path` of the config.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "The configuration file whose admin.path names the socket.")
    var config: String = "/etc/tulipd/tulipd.json"

    @Option(name: .long, help: "The admin socket (overrides the configuration's admin.path).")
    var socket: String?

    @Flag(name: .long, help: "Print the daemon's JSON reply instead of a table.")
    var json = false

    /// Sends `command` and prints the reply; a failed command exits 1.
    func send(_ command: String) throws {
        let path: String
        if let socket = self.socket {
            path = socket
        } else {
            let configuration: DaemonConfiguration
            do {
                configuration = try DaemonConfiguration.load(contentsOf: self.config)
            } catch let error as ConfigurationErrors {
                for entry in error.errors { printError(located(entry, file: self.config)) }
                throw ExitCode(exitConfigurationError)
            } catch let error as ConfigurationError {
                printError(located(error, file: self.config))
                throw ExitCode(exitConfigurationError)
            }
            guard let admin = configuration.admin else {
                printError("\(self.config) has no \"admin\" socket; add one or pass --socket PATH")
                throw ExitCode(exitConfigurationError)
            }
            path = admin.path
        }
        let response: AdminResponse
        do {
            response = try AdminClient(socketPath: path).send(command)
        } catch {
            printError(error.message)
            throw ExitCode.failure
        }
        print(self.json ? response.text : AdminTextFormatter.render(response))
        if !response.ok { throw ExitCode.failure }
    }
}

extension TulipdCommand {
    /// `tulipd status`: the running daemon and its listeners.
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the running daemon: pid, uptime, config generation, loop lag and every listener."
        )

        @OptionGroup var admin: AdminOptions

        func run() throws { try self.admin.send("status") }
    }

    /// `tulipd connections [LISTENER]`: the open connections.
    struct Connections: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the open connections, of one listener or of all."
        )

        @OptionGroup var admin: AdminOptions

        @Argument(help: "Only this listener's connections.")
        var listener: String?

        func run() throws { try self.admin.send(self.listener.map { "connections \($0)" } ?? "connections") }
    }

    /// `tulipd reload`: apply the configuration file again.
    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read the configuration in the running daemon (as SIGHUP does) and show what changed."
        )

        @OptionGroup var admin: AdminOptions

        func run() throws { try self.admin.send("reload") }
    }

    /// `tulipd drain LISTENER`: stop accepting on one listener.
    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop accepting on a listener and ask its connections to finish; `resume` undoes it."
        )

        @OptionGroup var admin: AdminOptions

        @Argument(help: "The listener's name.")
        var listener: String

        func run() throws { try self.admin.send("drain \(self.listener)") }
    }

    /// `tulipd resume LISTENER`: accept again on a drained listener.
    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept again on a drained listener.")

        @OptionGroup var admin: AdminOptions

        @Argument(help: "The listener's name.")
        var listener: String

        func run() throws { try self.admin.send("resume \(self.listener)") }
    }
}
