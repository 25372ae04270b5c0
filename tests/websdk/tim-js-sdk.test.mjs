// `tim-js-sdk` 2.x (the cloud IM's Web SDK under its old name) in Chromium against a real imlogin.
import { scenarios } from "./scenarios.mjs";

scenarios("tim-js-sdk");
