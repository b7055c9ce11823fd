// The entry of a command component, written by renga's JavaScript buildpack
// for @NAME@: exports wasi:cli/run and runs the module's default export with
// the command's arguments. An exception fails the command with its message;
// so does a returned promise, whose work could not finish (the engine does
// not run the event loop once the command returns).
import main from "@SCRIPT@";
import { getArguments } from "wasi:cli/environment@@WASI@";

function describe(error) {
  return error instanceof Error && error.stack ? `${error}\n${error.stack}` : String(error);
}

export const run = {
  run() {
    if (typeof main !== "function") {
      throw new Error("@NAME@'s default export is not a function");
    }
    let result;
    try {
      result = main(getArguments().slice(1));
    } catch (error) {
      console.error(describe(error));
      throw error;
    }
    if (result && typeof result.then === "function") {
      console.error(
        "@NAME@'s main returned a promise: a command runs synchronously (the engine does not run the event loop after it returns), so its work must be done when main returns",
      );
      throw new Error("main returned a promise");
    }
  },
};
