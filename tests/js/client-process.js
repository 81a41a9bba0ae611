// A phoenix client in its own process, for tests that kill a client abruptly (SIGKILL: no
// close frame, no leave). Usage: node client-process.js <socket url> <token> <topic>
// Prints "joined" once the join is accepted, then waits to be killed.
import WebSocket from "ws";
import { Socket } from "phoenix";

const [url, token, topic] = process.argv.slice(2);
const socket = new Socket(url, { transport: WebSocket, params: { token } });
socket.connect();
socket
  .channel(topic)
  .join()
  .receive("ok", () => console.log("joined"))
  .receive("error", (response) => {
    console.error(`join refused: ${JSON.stringify(response)}`);
    process.exit(1);
  });
