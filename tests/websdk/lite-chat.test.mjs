// `@tencentcloud/lite-chat` 4.x in Chromium against a real imlogin, its sockets routed there by the test
// (it has no address option; see sockets.mjs).
import { scenarios } from "./scenarios.mjs";

scenarios("@tencentcloud/lite-chat");
