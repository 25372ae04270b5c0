// `@tencentcloud/chat` 3.x (the Web SDK's current name) in Chromium against a real imlogin.
import { scenarios } from "./scenarios.mjs";

scenarios("@tencentcloud/chat");
