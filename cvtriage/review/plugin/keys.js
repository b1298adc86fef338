// cvtriage's review keys: one key press runs a decision operator of this plugin on the selected
// patches (or, with none selected, the first patch of the queue). FiftyOne's operator API has no
// key bindings of its own; this script listens on the page and hands the operator to the App's
// operator queue (window.__foo__, the App's operators module), which runs it with the App's
// current view and selection. Keys typed into a text field are left alone.
(function () {
  var PLUGIN = "@cvtriage/review/";
  var RUN = {c: "confirm", x: "not_object", u: "undo_decision"};
  var PROMPT = {r: "decide_class", a: "all_like_this"};  // these ask first: a class, a count
  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typing(event.target)) return;
    var operators = window.__foo__;
    if (!operators) return;
    var key = event.key.toLowerCase();
    if (RUN[key]) {
      operators.executeOperator(PLUGIN + RUN[key], {});
    } else if (PROMPT[key]) {
      operators.executeOperator("prompt_user_for_operation", {operator_uri: PLUGIN + PROMPT[key], params: {}});
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  }, true);
})();
